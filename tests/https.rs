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
