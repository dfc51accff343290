//! The web listener serving HTTPS itself, from certificate files: a
//! TLS-RPT report POSTed over a verified TLS connection to `dmarcd serve`
//! (RFC 8460 section 3) is stored and processed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

/// `dmarcd serve`, ended when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn serve(data: &std::path::Path, web: SocketAddr, tls: &[(&str, &std::path::Path)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dmarcd"));
    command
        .arg("serve")
        .env("DMARCD_DATA_DIR", data)
        .env_remove("DATABASE_URL")
        .env_remove("DMARCD_DATABASE_URL")
        .env("DMARCD_LOG", "warn")
        .env("DMARCD_SMTP_ENABLED", "false")
        .env("DMARCD_ENRICH_REVERSE_DNS", "false")
        .env("DMARCD_WEB_LISTEN", web.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, path) in tls {
        command.env(name, path);
    }
    command
}

/// One HTTP/1.1 request over TLS, verified against `root`; the whole reply.
fn https(
    address: SocketAddr,
    root: &rustls::pki_types::CertificateDer<'static>,
    request: &[u8],
) -> String {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut socket = TcpStream::connect(address).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut stream = rustls::Stream::new(&mut connection, &mut socket);
    stream.write_all(request).unwrap();
    let mut reply = Vec::new();
    // The server closes after the reply (Connection: close).
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

fn wait_for(address: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(address).is_err() {
        assert!(
            Instant::now() < deadline,
            "dmarcd serve did not listen on {address}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn tls_reports_are_posted_over_https_to_the_web_listener() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.path().join("web.crt");
    let key = dir.path().join("web.key");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();

    // Half a certificate is a configuration error that names both settings.
    let half = serve(
        dir.path(),
        free_port(),
        &[("DMARCD_WEB_TLS_CERT_FILE", &cert)],
    )
    .output()
    .unwrap();
    assert!(!half.status.success());
    let said = String::from_utf8_lossy(&half.stderr);
    assert!(
        said.contains("web.tls_cert_file and web.tls_key_file"),
        "{said}"
    );

    let address = free_port();
    let _server = Serve(
        serve(
            dir.path(),
            address,
            &[
                ("DMARCD_WEB_TLS_CERT_FILE", &cert),
                ("DMARCD_WEB_TLS_KEY_FILE", &key),
            ],
        )
        .spawn()
        .unwrap(),
    );
    wait_for(address);

    let health = https(
        address,
        certified.cert.der(),
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // Served over HTTPS: browsers are told to come back only that way.
    assert!(
        health
            .to_ascii_lowercase()
            .contains("\r\nstrict-transport-security: max-age=31536000\r\n"),
        "{health}"
    );

    let report = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/corpus/parsedmarc/smtp_tls/rfc8460.json"),
    )
    .unwrap();
    let mut post = format!(
        "POST /tlsrpt HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/tlsrpt+json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        report.len()
    )
    .into_bytes();
    post.extend_from_slice(&report);
    let stored = https(address, certified.cert.der(), &post);
    assert!(stored.starts_with("HTTP/1.1 200"), "{stored}");

    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let mut plain = TcpStream::connect(address).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/1.1 200"));

    // The report was stored through the inbox and processed by the worker.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listing = https(
            address,
            certified.cert.der(),
            b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
        assert!(listing.starts_with("HTTP/1.1 200"), "{listing}");
        let metrics = https(
            address,
            certified.cert.der(),
            b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
        if metrics
            .lines()
            .any(|line| line.starts_with("dmarcd_reports_stored_total{kind=\"tlsrpt\"} 1"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the TLS report was not stored: {metrics}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `dmarcd serve` started through `sh -c 'ulimit …; exec dmarcd serve'`
/// with SMTP on `smtp` and the web on `web`; its log goes to `log`.
fn serve_with_ulimit(
    data: &std::path::Path,
    ulimit: &str,
    web: SocketAddr,
    smtp: SocketAddr,
    log: &std::path::Path,
) -> Serve {
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit {ulimit} && exec \"$0\" serve"))
        .arg(env!("CARGO_BIN_EXE_dmarcd"))
        .env("DMARCD_DATA_DIR", data)
        .env_remove("DATABASE_URL")
        .env_remove("DMARCD_DATABASE_URL")
        .env("DMARCD_LOG", "info")
        .env("DMARCD_ENRICH_REVERSE_DNS", "false")
        .env("DMARCD_WEB_LISTEN", web.to_string())
        .env("DMARCD_WEB_HEADER_READ_TIMEOUT_SECONDS", "5")
        .env("DMARCD_SMTP_LISTEN", smtp.to_string())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    wait_for(web);
    wait_for(smtp);
    Serve(child)
}

/// The "Max open files" soft and hard limits of process `pid`.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap();
    let mut fields = line.split_whitespace().skip(3);
    (
        fields.next().unwrap().to_string(),
        fields.next().unwrap().to_string(),
    )
}

/// The SMTP greeting at `address`, or what went wrong.
fn smtp_greeting(address: SocketAddr) -> String {
    let Ok(stream) = TcpStream::connect_timeout(&address, Duration::from_secs(5)) else {
        return "no connection".to_string();
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut line = String::new();
    let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stream), &mut line);
    line
}

/// `GET /healthz` over plain HTTP; the status line, or what went wrong.
fn healthz(address: SocketAddr) -> String {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(5)) else {
        return "no connection".to_string();
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// ~20,000 web connections that each sent one header line and then nothing
/// drove the process to its descriptor limit: SMTP stopped greeting and
/// /healthz timed out. Under an open-file limit of 256 (soft and hard),
/// dmarcd now lowers its connection caps to fit (and says so), refuses web
/// connections past them, cuts slow ones after the header-read timeout,
/// and keeps descriptors for SMTP, which goes on greeting.
#[test]
fn a_flood_of_slow_web_clients_leaves_smtp_greeting_and_healthz_answering() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let (web, smtp) = (free_port(), free_port());

    // A soft limit is raised to the hard one at start.
    let raised = serve_with_ulimit(dir.path(), "-S -n 256", web, smtp, &log);
    let (soft, hard) = open_file_limits(raised.0.id());
    assert_eq!(soft, hard, "the soft limit was not raised");
    drop(raised);

    let (web, smtp) = (free_port(), free_port());
    let server = serve_with_ulimit(dir.path(), "-n 256", web, smtp, &log);
    assert_eq!(
        open_file_limits(server.0.id()),
        ("256".into(), "256".into())
    );
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("lowered to") && said.contains("web.max_connections"),
        "{said}"
    );

    // 400 slow clients from 20 addresses, each one header line and no more.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let flood = runtime.block_on(async {
        let mut flood = Vec::new();
        for client in 0..400 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            let local = format!("127.0.1.{}:0", client % 20 + 1);
            socket.bind(local.parse().unwrap()).unwrap();
            if let Ok(mut stream) = socket.connect(web).await {
                use tokio::io::AsyncWriteExt;
                let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
                flood.push(stream);
            }
        }
        flood
    });
    assert!(flood.len() > 300, "only {} connected", flood.len());

    let greeting = smtp_greeting(smtp);
    assert!(
        greeting.starts_with("220 "),
        "SMTP during the flood: {greeting:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = healthz(web);
        if status.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz never answered: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let greeting = smtp_greeting(smtp);
    assert!(
        greeting.starts_with("220 "),
        "SMTP after the flood: {greeting:?}"
    );
    drop(flood);
}
