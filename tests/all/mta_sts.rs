//! Hosted MTA-STS (issue 20) against real parts, on both backends: a
//! `dmarcd serve` process with its policy listener (HTTPS by SNI, from
//! certificate files of a test CA), its DNS listener for the hosted zone
//! (UDP and TCP) and its SMTP listener (STARTTLS with a certificate of the
//! same CA, the MX host the safety probe checks). The domain's own DNS
//! (its MX hosts and their addresses) is a test zone on loopback. A policy
//! is moved none → testing → enforce → testing through the API, and each
//! step is read back over HTTPS with a strict client and over DNS with a
//! real resolver and a raw DNS client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};

use crate::common;
use crate::common::process::{free_port, free_udp_and_tcp_port, wait_for};
use crate::common::zone_server::ZoneServer;

const ZONE: &str = "_hosted.reports.test";
const DOMAIN: &str = "example.test";

/// A test certificate authority and the PEM files it signed.
struct TestCa {
    dir: tempfile::TempDir,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "dmarcd MTA-STS test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), issuer.pem()).unwrap();
        TestCa { dir, issuer }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn root(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(self.ca_file()).unwrap()
    }

    /// A certificate for `names`, as (cert file, key file).
    fn issue(&self, label: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        let cert_file = self.dir.path().join(format!("{label}.crt"));
        let key_file = self.dir.path().join(format!("{label}.key"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }
}

/// `dmarcd serve`, killed when dropped.
struct Serve {
    child: Child,
    web: SocketAddr,
    mta_sts: SocketAddr,
    dns: SocketAddr,
    log: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

struct Setup {
    ca: TestCa,
    serve: Serve,
    token: String,
    _zone: ZoneServer,
    _data: tempfile::TempDir,
}

/// The domain's own DNS: MX hosts on loopback. `mx.example.test` has the
/// SMTP listener's certificate; `mx-bad.example.test` reaches the same
/// listener under a name its certificate does not hold.
fn domain_zone() -> String {
    format!(
        r#"
{DOMAIN}. MX 10 mx.{DOMAIN}.
mx.{DOMAIN}. A 127.0.0.1
mta-sts.{DOMAIN}. A 127.0.0.1
_mta-sts.{DOMAIN}. CNAME {DOMAIN}._mta-sts.{ZONE}.
badtls.test. MX 10 mx-bad.{DOMAIN}.
mx-bad.{DOMAIN}. A 127.0.0.1
uncovered.test. MX 10 mx.{DOMAIN}.
uncovered.test. MX 20 backup.other.test.
backup.other.test. A 127.0.0.1
"#
    )
}

async fn start(
    store: &dmarcd::store::Store,
    database_url: Option<&str>,
    data: tempfile::TempDir,
) -> Setup {
    for domain in [DOMAIN, "badtls.test", "uncovered.test"] {
        assert!(dmarcd::query::domains::add_domain(
            store,
            &dmarcd::scope::Scope::All,
            domain,
            None
        )
        .await
        .unwrap());
    }
    let token = dmarcd::accounts::Accounts::new(store.clone())
        .create_token("mta-sts-test")
        .await
        .unwrap();
    let zone = ZoneServer::start(&domain_zone(), &[]).await;
    let ca = TestCa::new();
    let (sts_cert, sts_key) = ca.issue(
        "mta-sts",
        &[&format!("mta-sts.{DOMAIN}"), "mta-sts.badtls.test"],
    );
    let (mx_cert, mx_key) = ca.issue("mx", &[&format!("mx.{DOMAIN}")]);
    let (smtp, web, mta_sts, dns) = (
        free_port(),
        free_port(),
        free_port(),
        free_udp_and_tcp_port(),
    );
    let log = data.path().join("serve.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_dmarcd"));
    command
        .arg("serve")
        .env("DMARCD_DATA_DIR", data.path())
        .env("DMARCD_LOG", "warn")
        .env("DMARCD_ENRICH_REVERSE_DNS", "false")
        .env("DMARCD_SMTP_LISTEN", smtp.to_string())
        .env("DMARCD_SMTP_RECIPIENTS", "dmarc@reports.test")
        .env("DMARCD_SMTP_HOSTNAME", format!("mx.{DOMAIN}"))
        .env("DMARCD_SMTP_TLS_CERT_FILE", &mx_cert)
        .env("DMARCD_SMTP_TLS_KEY_FILE", &mx_key)
        .env("DMARCD_WEB_LISTEN", web.to_string())
        .env("DMARCD_DNS_NAME_SERVERS", zone.address().to_string())
        .env("DMARCD_DNS_TIMEOUT_MS", "500")
        .env("DMARCD_DNS_CHECKS_ENABLED", "false")
        .env("DMARCD_DNS_MTA_STS_CA_FILE", ca.ca_file())
        .env("DMARCD_DNS_REPORT_HTTPS_HOSTS", "reports.test")
        .env("DMARCD_MTA_STS_LISTEN", mta_sts.to_string())
        .env("DMARCD_MTA_STS_HOST", "reports.test")
        .env("DMARCD_MTA_STS_CERT_FILE", &sts_cert)
        .env("DMARCD_MTA_STS_KEY_FILE", &sts_key)
        .env("DMARCD_MTA_STS_PROBE_PORT", smtp.port().to_string())
        .env("DMARCD_MTA_STS_PROBE_TIMEOUT_SECONDS", "5")
        .env("DMARCD_DNS_SERVER_LISTEN", dns.to_string())
        .env("DMARCD_DNS_SERVER_ZONE", ZONE)
        .env("DMARCD_DNS_SERVER_NAMESERVERS", "ns1.reports.test")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    match database_url {
        Some(url) => command.env("DATABASE_URL", url),
        None => command
            .env_remove("DATABASE_URL")
            .env_remove("DMARCD_DATABASE_URL"),
    };
    let mut child = command.spawn().unwrap();
    for address in [web, mta_sts, dns, smtp] {
        wait_for(address, &mut child, &log);
    }
    Setup {
        ca,
        serve: Serve {
            child,
            web,
            mta_sts,
            dns,
            log,
        },
        token,
        _zone: zone,
        _data: data,
    }
}

/// An API call with the test's token; the status and the JSON body.
fn api(setup: &Setup, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    common::process::api(setup.serve.web, &setup.token, method, path, body)
}

/// GET the policy over HTTPS with SNI `sni` and Host `host`, trusting
/// only the test CA: (status line, head, body).
fn fetch(
    setup: &Setup,
    sni: &str,
    host: &str,
    path: &str,
) -> Result<(String, String, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(setup.ca.root()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut socket = TcpStream::connect(setup.serve.mta_sts).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut stream = rustls::Stream::new(&mut connection, &mut socket);
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|error| error.to_string())?;
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP reply: {reply:?}"))?;
    let status = head.lines().next().unwrap_or_default().to_string();
    Ok((status, head.to_string(), body.to_string()))
}

/// One DNS question over UDP (no EDNS) or TCP; the whole answer.
fn ask(server: SocketAddr, name: &str, kind: RecordType, tcp: bool) -> Message {
    let mut query = Message::new(0x4d53, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(Name::from_str(name).unwrap(), kind));
    let bytes = query.to_vec().unwrap();
    let answer = if tcp {
        let mut stream = TcpStream::connect(server).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed).unwrap();
        let mut length = [0u8; 2];
        stream.read_exact(&mut length).unwrap();
        let mut answer = vec![0u8; u16::from_be_bytes(length) as usize];
        stream.read_exact(&mut answer).unwrap();
        answer
    } else {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket.send_to(&bytes, server).unwrap();
        let mut answer = vec![0u8; 65_535];
        let (length, _) = socket.recv_from(&mut answer).unwrap();
        answer.truncate(length);
        answer
    };
    Message::from_vec(&answer).unwrap()
}

fn txt_of(message: &Message) -> Vec<String> {
    message
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::TXT(txt) => Some(txt.to_string()),
            _ => None,
        })
        .collect()
}

/// The `_mta-sts` TXT as a real resolver (dmarcd's own, hickory) reads it.
async fn resolved_sts(setup: &Setup) -> Vec<String> {
    let client = dmarcd::dns::resolver::DnsClient::new(&dmarcd::dns::DnsConfig {
        name_servers: vec![setup.serve.dns.to_string()],
        timeout_ms: 2000,
        attempts: 2,
        cache_seconds: 0,
        ..dmarcd::dns::DnsConfig::default()
    })
    .unwrap();
    match client.txt(&format!("{DOMAIN}._mta-sts.{ZONE}")).await {
        dmarcd::dns::resolver::Answer::Found(records) => {
            records.into_iter().map(|txt| txt.text).collect()
        }
        other => panic!("the hosted _mta-sts record did not resolve: {other:?}"),
    }
}

/// The policy as served, checked for the headers RFC 8461 asks for.
fn served_policy(setup: &Setup) -> String {
    let host = format!("mta-sts.{DOMAIN}");
    let (status, head, body) = fetch(setup, &host, &host, "/.well-known/mta-sts.txt").unwrap();
    assert!(status.contains(" 200 "), "{status}\n{}", setup.serve.log());
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: text/plain; charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("cache-control: max-age=300"), "{head}");
    assert!(body.contains("\r\n") && !body.replace("\r\n", "").contains('\n'));
    body
}

async fn policy_step(
    setup: &Setup,
    request: Value,
    mode: &str,
    previous_id: Option<&str>,
) -> String {
    let (status, body) = api(
        setup,
        "PUT",
        &format!("/domains/{DOMAIN}/mta-sts"),
        Some(request),
    );
    assert_eq!(status, 200, "{body}\n{}", setup.serve.log());
    let id = body["policy"]["policy_id"].as_str().unwrap().to_string();
    if let Some(previous) = previous_id {
        assert!(id.as_str() > previous, "{id} after {previous}");
    }
    // Within one request of the change, HTTPS and DNS both show it.
    let text = served_policy(setup);
    assert!(text.starts_with("version: STSv1\r\n"), "{text}");
    assert!(text.contains(&format!("mode: {mode}\r\n")), "{text}");
    assert!(text.contains(&format!("mx: mx.{DOMAIN}\r\n")), "{text}");
    let sts = format!("v=STSv1; id={id}");
    for tcp in [false, true] {
        let answer = ask(
            setup.serve.dns,
            &format!("{DOMAIN}._mta-sts.{ZONE}."),
            RecordType::TXT,
            tcp,
        );
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert!(answer.metadata.authoritative);
        assert_eq!(txt_of(&answer), std::slice::from_ref(&sts), "tcp: {tcp}");
        assert_eq!(answer.answers[0].ttl, 300);
    }
    assert_eq!(resolved_sts(setup).await, [sts]);
    id
}

async fn a_policy_moves_through_every_mode(setup: &Setup) {
    // Before any policy: nothing served, nothing in DNS.
    let host = format!("mta-sts.{DOMAIN}");
    let (status, _, _) = fetch(setup, &host, &host, "/.well-known/mta-sts.txt").unwrap();
    assert!(status.contains(" 404 "), "{status}");
    let answer = ask(
        setup.serve.dns,
        &format!("{DOMAIN}._mta-sts.{ZONE}."),
        RecordType::TXT,
        false,
    );
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);

    // testing: the MX patterns come from the live MX records.
    let testing = policy_step(setup, json!({"mode": "testing"}), "testing", None).await;
    let served = served_policy(setup);
    assert!(served.contains("max_age: 86400\r\n"), "{served}");
    // enforce: dmarcd's own SMTP listener is the MX, its certificate valid.
    let enforce = policy_step(setup, json!({"mode": "enforce"}), "enforce", Some(&testing)).await;
    assert!(served_policy(setup).contains("max_age: 604800\r\n"));
    let (_, view) = api(setup, "GET", &format!("/domains/{DOMAIN}/mta-sts"), None);
    assert_eq!(view["policy"]["mode"], "enforce");
    let back = policy_step(setup, json!({"mode": "testing"}), "testing", Some(&enforce)).await;
    // none withdraws cleanly: still served, with the patterns.
    let none = policy_step(setup, json!({"mode": "none"}), "none", Some(&back)).await;
    assert_ne!(none, back);

    // The history says who changed what, newest first.
    let (_, view) = api(setup, "GET", &format!("/domains/{DOMAIN}/mta-sts"), None);
    let history = view["history"].as_array().unwrap();
    let steps: Vec<(&str, &str)> = history
        .iter()
        .map(|h| {
            (
                h["old"]["mode"].as_str().unwrap_or("-"),
                h["new"]["mode"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("testing", "none"),
            ("enforce", "testing"),
            ("testing", "enforce"),
            ("-", "testing")
        ]
    );
    assert!(history
        .iter()
        .all(|h| h["changed_by"] == "token:mta-sts-test"));
    assert_eq!(history[0]["new_id"].as_str(), Some(none.as_str()));
    // The records to publish are the CNAMEs of the delegation.
    let records: Vec<String> = view["records_to_publish"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["name"].as_str().unwrap(),
                r["kind"].as_str().unwrap(),
                r["value"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        records.contains(&format!(
            "_mta-sts.{DOMAIN}. CNAME {DOMAIN}._mta-sts.{ZONE}."
        )),
        "{records:?}"
    );
    assert!(
        records.contains(&format!("mta-sts.{DOMAIN}. CNAME reports.test.")),
        "{records:?}"
    );
}

async fn enforce_is_refused_when_mail_would_be_lost(setup: &Setup) {
    // The MX host's certificate does not name it.
    let path = "/domains/badtls.test/mta-sts";
    let (status, body) = api(setup, "PUT", path, Some(json!({"mode": "enforce"})));
    assert_eq!(status, 409, "{body}");
    let probe = &body["refusal"]["probes"][0];
    assert_eq!(probe["host"], format!("mx-bad.{DOMAIN}"));
    assert_eq!(probe["ok"], false);
    assert!(
        probe["detail"].as_str().unwrap().contains("not valid"),
        "{probe}"
    );
    // Nothing was stored by the refusal.
    let (_, view) = api(setup, "GET", path, None);
    assert!(view["policy"].is_null(), "{view}");
    // Forced, it is stored and the history says so.
    let (status, body) = api(
        setup,
        "PUT",
        path,
        Some(json!({"mode": "enforce", "force": true})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["forced_past"].as_array().unwrap().len(), 1, "{body}");
    let (_, view) = api(setup, "GET", path, None);
    assert_eq!(view["history"][0]["forced"], true);

    // An MX host no pattern covers.
    let (status, body) = api(
        setup,
        "PUT",
        "/domains/uncovered.test/mta-sts",
        Some(json!({"mode": "enforce", "mx": [format!("mx.{DOMAIN}")]})),
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("backup.other.test matches no mx pattern"),
        "{body}"
    );

    // The checks endpoint probes the same way, on request.
    let (status, checks) = api(
        setup,
        "GET",
        &format!("/domains/{DOMAIN}/mta-sts/checks"),
        None,
    );
    assert_eq!(status, 200, "{checks}");
    assert_eq!(checks["mx_hosts"], json!([format!("mx.{DOMAIN}")]));
    assert_eq!(checks["probes"][0]["ok"], true, "{checks}");
    assert_eq!(checks["dns"]["delegated"], true, "{checks}");
    let (_, checks) = api(setup, "GET", "/domains/badtls.test/mta-sts/checks", None);
    assert_eq!(checks["dns"]["delegated"], false, "{checks}");
    assert!(
        checks["dns"]["summary"]
            .as_str()
            .unwrap()
            .contains("is not a CNAME to badtls.test._mta-sts."),
        "{checks}"
    );
}

async fn bad_input_is_refused_clearly(setup: &Setup) {
    let path = format!("/domains/{DOMAIN}/mta-sts");
    for (body, says) in [
        (json!({"mode": "enforce", "mx": ["mx..example.test"]}), "mx"),
        (json!({"mode": "enforce", "mx": ["*.*.example.test"]}), "mx"),
        (
            json!({"mode": "enforce", "mx": [format!("{}.test", "a".repeat(300))]}),
            "mx",
        ),
        (json!({"mode": "testing", "mx": []}), "mx"),
        (
            json!({"mode": "testing", "mx": (0..40).map(|i| format!("mx{i}.example.test")).collect::<Vec<_>>()}),
            "mx",
        ),
        (json!({"mode": "testing", "max_age": 60}), "max_age"),
        (json!({"mode": "strict"}), "strict"),
    ] {
        let (status, answer) = api(setup, "PUT", &path, Some(body.clone()));
        assert_eq!(status, 400, "{body} → {answer}");
        assert!(answer["error"].as_str().unwrap().contains(says), "{answer}");
    }
    let (status, _) = api(
        setup,
        "PUT",
        "/domains/unknown.test/mta-sts",
        Some(json!({"mode": "testing", "mx": ["mx.unknown.test"]})),
    );
    assert_eq!(status, 404);

    // Host headers: a port, upper case and a final dot name the same
    // policy; unknown hosts and other paths are 404.
    let sni = format!("mta-sts.{DOMAIN}");
    for host in [
        format!("mta-sts.{DOMAIN}:443"),
        format!("MTA-STS.{}", DOMAIN.to_uppercase()),
        format!("mta-sts.{DOMAIN}."),
    ] {
        let (status, _, body) = fetch(setup, &sni, &host, "/.well-known/mta-sts.txt").unwrap();
        assert!(status.contains(" 200 "), "{host}: {status}");
        assert!(body.starts_with("version: STSv1"));
    }
    for (host, path) in [
        ("mta-sts.unknown.test", "/.well-known/mta-sts.txt"),
        ("reports.test", "/.well-known/mta-sts.txt"),
        (sni.as_str(), "/"),
        (sni.as_str(), "/api/v1/openapi.json"),
        (sni.as_str(), "/.well-known/acme-challenge/unknown-token"),
    ] {
        let (status, _, _) = fetch(setup, &sni, host, path).unwrap();
        assert!(status.contains(" 404 "), "{host}{path}: {status}");
    }
    // SNI for a host without a certificate: the handshake fails.
    assert!(fetch(setup, "mta-sts.unknown.test", "mta-sts.unknown.test", "/").is_err());

    // DNS: other zones are refused (no open resolver), ANY gets a small
    // answer, unknown names in the zone do not exist.
    let other = ask(setup.serve.dns, "example.com.", RecordType::A, false);
    assert_eq!(other.metadata.response_code, ResponseCode::Refused);
    let any = ask(
        setup.serve.dns,
        &format!("{DOMAIN}._mta-sts.{ZONE}."),
        RecordType::ANY,
        false,
    );
    assert_eq!(any.metadata.response_code, ResponseCode::NoError);
    assert_eq!(txt_of(&any).len(), 1);
    let unknown = ask(
        setup.serve.dns,
        &format!("www.{ZONE}."),
        RecordType::TXT,
        false,
    );
    assert_eq!(unknown.metadata.response_code, ResponseCode::NXDomain);
    let soa = ask(setup.serve.dns, &format!("{ZONE}."), RecordType::SOA, true);
    assert!(matches!(soa.answers[0].data, RData::SOA(_)));
}

async fn hosted_records_are_served(setup: &Setup) {
    // TLS-RPT: reports come here, by mail and HTTPS.
    let tlsrpt = ask(
        setup.serve.dns,
        &format!("{DOMAIN}._smtp._tls.{ZONE}."),
        RecordType::TXT,
        false,
    );
    assert_eq!(
        txt_of(&tlsrpt),
        ["v=TLSRPTv1; rua=mailto:dmarc@reports.test,https://reports.test/tlsrpt"]
    );
    // The hosted DMARC record, edited through the API.
    let path = format!("/domains/{DOMAIN}/hosted-dmarc");
    let (status, _) = api(setup, "GET", &path, None);
    assert_eq!(status, 404);
    let long_rua: Vec<String> = (0..5)
        .map(|i| format!("mailto:aggregate.reports.{i}@collector{i}.reports.example.test"))
        .collect();
    let (status, body) = api(
        setup,
        "PUT",
        &path,
        Some(
            json!({"p": "quarantine", "sp": "reject", "pct": 50, "t": true, "rua": long_rua, "ruf": long_rua, "adkim": "s"}),
        ),
    );
    assert_eq!(status, 200, "{body}");
    let record = body["record"].as_str().unwrap().to_string();
    assert!(record.starts_with("v=DMARC1; p=quarantine; sp=reject; pct=50; t=y; rua=mailto:"));
    // Past 512 bytes: over UDP without EDNS the answer is truncated, and
    // the whole record comes over TCP.
    let name = format!("{DOMAIN}._dmarc.{ZONE}.");
    let udp = ask(setup.serve.dns, &name, RecordType::TXT, false);
    assert!(udp.metadata.truncation, "{udp:?}");
    let tcp = ask(setup.serve.dns, &name, RecordType::TXT, true);
    assert_eq!(txt_of(&tcp), std::slice::from_ref(&record));
    for bad in [
        json!({"p": "block"}),
        json!({"p": "none", "pct": 101}),
        json!({"p": "none", "rua": ["dmarc@example.test"]}),
        json!({"p": "none", "rua": ["mailto:a@b.test; p=reject"]}),
        json!({"p": "none", "adkim": "x"}),
    ] {
        let (status, answer) = api(setup, "PUT", &path, Some(bad.clone()));
        assert_eq!(status, 400, "{bad} → {answer}");
    }
    let (status, _) = api(setup, "DELETE", &path, None);
    assert_eq!(status, 204);
    let gone = ask(setup.serve.dns, &name, RecordType::TXT, true);
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test(flavor = "multi_thread")]
async fn hosted_mta_sts_on_both_backends() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (dir, store) = common::db::sqlite().await;
    let sqlite = start(&store, None, dir).await;
    run_all(&sqlite).await;
    drop(sqlite);
    match common::db::postgres_named().await {
        Some((dir, store, name)) => {
            let url = common::db::with_database(&std::env::var("DATABASE_URL").unwrap(), &name);
            let postgres = start(&store, Some(&url), dir).await;
            run_all(&postgres).await;
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

async fn run_all(setup: &Setup) {
    a_policy_moves_through_every_mode(setup).await;
    enforce_is_refused_when_mail_would_be_lost(setup).await;
    bad_input_is_refused_clearly(setup).await;
    hosted_records_are_served(setup).await;
    changes_are_in_the_audit_log(setup).await;
}

/// Each policy change and each hosted DMARC change made above is in the
/// audit log, with the token, its address and the value before and after;
/// refused changes (409, 400) are not.
async fn changes_are_in_the_audit_log(setup: &Setup) {
    let (status, policies) = api(
        setup,
        "GET",
        "/audit?action=mta_sts.policy_change&limit=1000",
        None,
    );
    assert_eq!(status, 200, "{policies}");
    let policies = policies["entries"].as_array().unwrap();
    assert!(!policies.is_empty());
    for entry in policies {
        assert_eq!(entry["actor"], "token:mta-sts-test", "{entry}");
        assert_eq!(entry["address"], "127.0.0.1", "{entry}");
        assert!(
            entry["new_value"].as_str().unwrap().contains("\"mode\""),
            "{entry}"
        );
    }
    // Every stored policy version was one recorded change, no more.
    let mut versions = 0;
    for domain in [DOMAIN, "badtls.test", "uncovered.test"] {
        let (_, history) = api(setup, "GET", &format!("/domains/{domain}/mta-sts"), None);
        versions += history["history"].as_array().map_or(0, Vec::len);
    }
    assert_eq!(policies.len(), versions, "{policies:?}");
    // The first start made the first admin, recorded as the system's doing.
    let (_, added) = api(setup, "GET", "/audit?action=user.add", None);
    let added = added["entries"].as_array().unwrap();
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(
        (added[0]["actor"].as_str(), added[0]["target"].as_str()),
        (Some("system"), Some("admin"))
    );
    let (_, dmarc) = api(setup, "GET", "/audit?action=hosted_dmarc.change", None);
    let dmarc = dmarc["entries"].as_array().unwrap();
    assert_eq!(dmarc.len(), 2, "set, then removed: {dmarc:?}");
    assert!(
        dmarc[0]["new_value"].is_null()
            && dmarc[0]["old_value"]
                .as_str()
                .unwrap()
                .contains("quarantine")
    );
    assert!(
        dmarc[1]["old_value"].is_null()
            && dmarc[1]["new_value"]
                .as_str()
                .unwrap()
                .contains("quarantine")
    );
}
