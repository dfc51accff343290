//! ACME certificates for hosted MTA-STS hosts (issue 20) from a real ACME
//! server: Pebble (the Debian package), started here on loopback with a
//! certificate of a test CA for its own HTTPS, validating challenges
//! against `dmarcd serve` and resolving names through a test zone. The
//! certificate is issued, served by SNI to a client that trusts only
//! Pebble's root, and renewed when asked; on SQLite with TLS-ALPN-01 (the
//! policy listener answers the validation), on PostgreSQL with HTTP-01
//! (the plain-HTTP listener answers it). With the certificate in place the
//! dashboard moves the policy through every mode, each step served over
//! HTTPS with it and announced by the DNS listener with a fresh id.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};

use crate::common;
use crate::common::process::{api, free_port, free_udp_and_tcp_port, wait_for, Process};
use crate::common::zone_server::ZoneServer;

const PEBBLE: &str = "/usr/bin/pebble";
const DOMAIN: &str = "acme.test";
const ZONE: &str = "_hosted.reports.test";

/// The TXT text at `name`, asked over UDP.
fn dig_txt(server: SocketAddr, name: &str) -> String {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let mut query = Message::new(7, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(
        Name::from_utf8(name).unwrap(),
        RecordType::TXT,
    ));
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket.send_to(&query.to_vec().unwrap(), server).unwrap();
    let mut answer = vec![0u8; 4096];
    let (length, _) = socket.recv_from(&mut answer).unwrap();
    let answer = Message::from_vec(&answer[..length]).unwrap();
    answer
        .answers
        .iter()
        .find_map(|record| match &record.data {
            RData::TXT(txt) => Some(txt.to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

/// A strict TLS client trusting `roots` only.
fn client(roots: &[CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth(),
    )
}

/// GET `path` from `address` over TLS as `host`: the body and the
/// certificate the server presented.
fn https_get(
    config: Arc<rustls::ClientConfig>,
    address: SocketAddr,
    host: &str,
    path: &str,
) -> Result<(String, Vec<u8>), String> {
    let name = ServerName::try_from(host.to_string()).unwrap();
    let mut connection = rustls::ClientConnection::new(config, name).unwrap();
    let mut socket = TcpStream::connect(address).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut stream = rustls::Stream::new(&mut connection, &mut socket);
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .map_err(|error| error.to_string())?;
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let presented = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.to_vec())
        .unwrap_or_default();
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .ok_or(format!("no reply: {reply:?}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.to_string());
    }
    Ok((body.to_string(), presented))
}

struct Pebble {
    _process: Process,
    directory: String,
    management: SocketAddr,
    ca_file: PathBuf,
    test_root: CertificateDer<'static>,
}

/// Pebble on loopback: its HTTPS from a test CA, validation on
/// `http_port`/`tls_port`, names resolved by `dns`.
fn start_pebble(dir: &Path, dns: SocketAddr, http_port: u16, tls_port: u16) -> Pebble {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dmarcd ACME test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let leaf = leaf.signed_by(&key, &ca).unwrap();
    let ca_file = dir.join("pebble-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(dir.join("pebble.crt"), leaf.pem()).unwrap();
    std::fs::write(dir.join("pebble.key"), key.serialize_pem()).unwrap();
    let (listen, management) = (free_port(), free_port());
    let config = json!({"pebble": {
        "listenAddress": listen.to_string(),
        "managementListenAddress": management.to_string(),
        "certificate": dir.join("pebble.crt"),
        "privateKey": dir.join("pebble.key"),
        "httpPort": http_port,
        "tlsPort": tls_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false
    }});
    std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
    let log = dir.join("pebble.log");
    let mut child = Command::new(PEBBLE)
        .arg("-config")
        .arg(dir.join("pebble.json"))
        .arg("-dnsserver")
        .arg(dns.to_string())
        // No random pauses before validation, and no nonces rejected at
        // random (instant-acme retries those, but a test must not depend on luck).
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        // Every order validates afresh (renewal too).
        .env("PEBBLE_AUTHZREUSE", "0")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(listen, &mut child, &log);
    wait_for(management, &mut child, &log);
    Pebble {
        _process: Process(child),
        directory: format!("https://localhost:{}/dir", listen.port()),
        management,
        ca_file,
        test_root: CertificateDer::from_pem_file(dir.join("pebble-ca.pem")).unwrap(),
    }
}

impl Pebble {
    /// The root Pebble made at start, which signs what it issues.
    fn issuing_root(&self) -> CertificateDer<'static> {
        let config = client(std::slice::from_ref(&self.test_root));
        let (pem, _) = https_get(config, self.management, "localhost", "/roots/0").unwrap();
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }
}

/// Waits for the certificate to be valid and issued after `after`.
fn wait_for_certificate(web: SocketAddr, token: &str, after: Option<&str>, log: &Path) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, view) = api(
            web,
            token,
            "GET",
            &format!("/domains/{DOMAIN}/mta-sts"),
            None,
        );
        let certificate = view["certificate"].clone();
        if certificate["valid"] == true && certificate["issued_at"].as_str() != after {
            return certificate;
        }
        assert!(
            Instant::now() < deadline,
            "no certificate: {certificate}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn issue_and_renew(
    store: &dmarcd::store::Store,
    database_url: Option<&str>,
    data: &Path,
    challenge: &str,
) {
    assert!(
        dmarcd::query::domains::add_domain(store, &dmarcd::scope::Scope::All, DOMAIN, None)
            .await
            .unwrap()
    );
    let token = dmarcd::accounts::Accounts::new(store.clone())
        .create_token("acme-test")
        .await
        .unwrap();
    let zone = ZoneServer::start(
        &format!("{DOMAIN}. MX 10 mx.{DOMAIN}.\nmx.{DOMAIN}. A 127.0.0.1\nmta-sts.{DOMAIN}. A 127.0.0.1\n"),
        &[],
    )
    .await;
    let (web, mta_sts, http) = (free_port(), free_port(), free_port());
    let dns = free_udp_and_tcp_port();
    let pebble = start_pebble(data, zone.address(), http.port(), mta_sts.port());
    let log = data.join("serve.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_dmarcd"));
    command
        .arg("serve")
        .env("DMARCD_DATA_DIR", data)
        .env("DMARCD_LOG", "warn,dmarcd::hosted=info")
        .env("DMARCD_ENRICH_REVERSE_DNS", "false")
        .env("DMARCD_SMTP_ENABLED", "false")
        .env("DMARCD_WEB_LISTEN", web.to_string())
        .env("DMARCD_DNS_NAME_SERVERS", zone.address().to_string())
        .env("DMARCD_DNS_CHECKS_ENABLED", "false")
        .env("DMARCD_MTA_STS_LISTEN", mta_sts.to_string())
        .env("DMARCD_MTA_STS_HTTP_LISTEN", http.to_string())
        .env("DMARCD_MTA_STS_ACME_DIRECTORY_URL", &pebble.directory)
        .env("DMARCD_MTA_STS_ACME_CA_FILE", &pebble.ca_file)
        .env("DMARCD_MTA_STS_ACME_CONTACT", "mailto:admin@acme.test")
        .env("DMARCD_MTA_STS_ACME_CHALLENGE", challenge)
        .env("DMARCD_DNS_SERVER_LISTEN", dns.to_string())
        .env("DMARCD_DNS_SERVER_ZONE", ZONE)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    match database_url {
        Some(url) => command.env("DATABASE_URL", url),
        None => command
            .env_remove("DATABASE_URL")
            .env_remove("DMARCD_DATABASE_URL"),
    };
    let mut serve = Process(command.spawn().unwrap());
    for address in [web, mta_sts, http, dns] {
        wait_for(address, &mut serve.0, &log);
    }
    let host = format!("mta-sts.{DOMAIN}");
    // No certificate for the host yet: no handshake.
    let pebble_root = pebble.issuing_root();
    assert!(https_get(
        client(std::slice::from_ref(&pebble_root)),
        mta_sts,
        &host,
        "/.well-known/mta-sts.txt"
    )
    .is_err());

    // The first policy asks for the certificate.
    let (status, body) = api(
        web,
        &token,
        "PUT",
        &format!("/domains/{DOMAIN}/mta-sts"),
        Some(json!({"mode": "testing"})),
    );
    assert_eq!(status, 200, "{body}");
    let first = wait_for_certificate(web, &token, None, &log);
    assert!(first["last_error"].is_null(), "{first}");
    let (policy, served) = https_get(
        client(std::slice::from_ref(&pebble_root)),
        mta_sts,
        &host,
        "/.well-known/mta-sts.txt",
    )
    .unwrap_or_else(|error| {
        panic!(
            "{error}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    assert!(policy.contains("mode: testing\r\n"), "{policy}");
    let (not_before, not_after) = dmarcd::hosted::validity::validity(&served).unwrap();
    assert!(not_after > not_before);

    // Renewal when asked: a new certificate, served at once by this node.
    let (status, body) = api(
        web,
        &token,
        "POST",
        &format!("/domains/{DOMAIN}/mta-sts/certificate/renew"),
        None,
    );
    assert_eq!(status, 202, "{body}");
    let renewed = wait_for_certificate(web, &token, first["issued_at"].as_str(), &log);
    assert!(renewed["last_error"].is_null(), "{renewed}");
    let (_, served_again) = https_get(
        client(std::slice::from_ref(&pebble_root)),
        mta_sts,
        &host,
        "/.well-known/mta-sts.txt",
    )
    .unwrap();
    assert_ne!(served, served_again, "the renewed certificate is served");
    // The renewal asked for is in the audit log.
    let (status, audit) = api(
        web,
        &token,
        "GET",
        "/audit?action=mta_sts.certificate_renew",
        None,
    );
    assert_eq!(status, 200, "{audit}");
    let renewals = audit["entries"].as_array().unwrap();
    assert_eq!(renewals.len(), 1, "{audit}");
    assert_eq!(renewals[0]["target"], host.as_str(), "{audit}");
    // /metrics tells how long the certificate has left and how orders went.
    let metrics = ureq::get(&format!("http://{web}/metrics"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains("dmarcd_mta_sts_certificate_expiry_seconds{host=\"mta-sts.acme.test\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("dmarcd_mta_sts_certificate_failures{host=\"mta-sts.acme.test\"} 0"));
    assert!(
        metrics.contains("dmarcd_acme_orders_total{result=\"issued\"} 2"),
        "{metrics}"
    );
    // The dashboard moves the policy testing → enforce (forced: this test
    // has no MX listener) → testing → none; each step is served at once with
    // the ACME certificate, and announced by the DNS listener with its id.
    let accounts = dmarcd::accounts::Accounts::new(store.clone());
    accounts
        .add_user("alice", "correct horse battery", "admin")
        .await
        .unwrap();
    let (session, user) = accounts
        .login("alice", "correct horse battery", chrono::Duration::hours(1))
        .await
        .unwrap()
        .unwrap();
    let mut previous = String::new();
    for (mode, force) in [
        ("enforce", true),
        ("testing", false),
        ("none", false),
        ("testing", false),
    ] {
        let form = format!(
            "csrf={}&mode={mode}&mx=mx.{DOMAIN}{}",
            user.csrf_token,
            if force { "&force=1" } else { "" }
        );
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        let response = agent
            .post(&format!("http://{web}/domains/{DOMAIN}/mta-sts"))
            .header("Cookie", &format!("dmarcd_session={session}"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(form)
            .unwrap();
        assert_eq!(response.status().as_u16(), 303, "{mode}");
        let (policy, presented) = https_get(
            client(std::slice::from_ref(&pebble_root)),
            mta_sts,
            &host,
            "/.well-known/mta-sts.txt",
        )
        .unwrap();
        assert!(policy.contains(&format!("mode: {mode}\r\n")), "{policy}");
        assert_eq!(presented, served_again, "served with the ACME certificate");
        let (_, view) = api(
            web,
            &token,
            "GET",
            &format!("/domains/{DOMAIN}/mta-sts"),
            None,
        );
        let id = view["policy"]["policy_id"].as_str().unwrap().to_string();
        assert_ne!(id, previous);
        let txt = dig_txt(dns, &format!("{DOMAIN}._mta-sts.{ZONE}."));
        assert_eq!(txt, format!("v=STSv1; id={id}"));
        previous = id;
    }
    let (_, view) = api(
        web,
        &token,
        "GET",
        &format!("/domains/{DOMAIN}/mta-sts"),
        None,
    );
    assert_eq!(view["history"][3]["changed_by"], "alice");
    assert_eq!(view["history"][3]["forced"], true);

    // The account and both certificates were made by one account, stored once.
    let db = store.db();
    let (accounts,): (i64,) = db
        .fetch_one(&db.statement("SELECT count(*) FROM acme_accounts", Vec::new()))
        .await
        .unwrap();
    assert_eq!(accounts, 1);
    drop(serve);
    drop(zone);
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_come_from_pebble_and_renew_on_both_backends() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if !Path::new(PEBBLE).exists() {
        assert!(std::env::var_os("CI").is_none(), "CI installs pebble");
        eprintln!("NOTE: pebble is not installed: the ACME test was SKIPPED");
        return;
    }
    let (dir, store) = common::db::sqlite().await;
    issue_and_renew(&store, None, dir.path(), "tls-alpn-01").await;
    match common::db::postgres_named().await {
        Some((dir, store, name)) => {
            let url = common::db::with_database(&std::env::var("DATABASE_URL").unwrap(), &name);
            issue_and_renew(&store, Some(&url), dir.path(), "http-01").await;
        }
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs the PostgreSQL half"
            );
            eprintln!("NOTE: DATABASE_URL is unset: the PostgreSQL half was SKIPPED");
        }
    }
}
