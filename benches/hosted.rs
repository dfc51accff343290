//! Throughput of hosted MTA-STS on loopback (issue 20): the policy
//! listener (HTTPS, certificate by SNI, policy by Host from the database)
//! and the DNS listener of the hosted zone (`_mta-sts` TXT from the
//! database), for 100 hosted domains, on SQLite and (with DATABASE_URL)
//! PostgreSQL. Clients run in this process on the same 2 cores as the
//! server, so the figures are a floor.
//!
//!   cargo bench --bench hosted

// Only its database helpers are used here.
#[allow(dead_code)]
#[path = "../tests/all/common/db.rs"]
mod db;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dmarcd::hosted::certs::HostCertificates;
use dmarcd::hosted::dns_server::{DnsListener, HostedZone};
use dmarcd::hosted::policy::{Mode, Policy};
use dmarcd::hosted::DnsServerConfig;
use dmarcd::store::Store;
use dmarcd::web::WebListener;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};

const DOMAINS: usize = 100;
const ZONE: &str = "_hosted.reports.test";
const RUN: Duration = Duration::from_secs(5);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (_dir, sqlite) = db::sqlite().await;
        measure("SQLite", sqlite).await;
        match db::postgres().await {
            Some((_dir, postgres)) => measure("PostgreSQL", postgres).await,
            None => println!("hosted: DATABASE_URL unset, PostgreSQL not measured"),
        }
    });
}

async fn measure(backend: &str, store: Store) {
    for n in 0..DOMAINS {
        let domain = format!("d{n}.test");
        dmarcd::query::domains::add_domain(&store, &dmarcd::scope::Scope::All, &domain, None)
            .await
            .unwrap();
        let policy = Policy::new(Mode::Enforce, &[format!("mx.{domain}")], None).unwrap();
        dmarcd::store::hosted::set_policy(
            store.db(),
            &domain,
            &policy,
            "bench",
            false,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    }
    let hosts: Vec<String> = (0..DOMAINS).map(|n| format!("mta-sts.d{n}.test")).collect();
    let certified = rcgen::generate_simple_self_signed(hosts.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let certificates = Arc::new(
        HostCertificates::new(
            store.clone(),
            Some(dmarcd::tls::CertificateFiles { cert, key }),
        )
        .unwrap(),
    );
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https = tcp.local_addr().unwrap();
    let listener = WebListener::from(tcp).with_host_certificates(certificates);
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let router = dmarcd::hosted::site::router(store.clone(), 300);
    tokio::spawn(dmarcd::web::serve(listener, router, stopped));
    let config = DnsServerConfig {
        zone: Some(ZONE.to_string()),
        ..DnsServerConfig::default()
    };
    let zone = HostedZone::new(store.clone(), &config, None).unwrap();
    let dns = DnsListener::start("127.0.0.1:0", zone).await.unwrap();

    let root = certified.cert.der().clone();
    for (label, clients, keep_alive) in [
        ("HTTPS, a new TLS connection per fetch", 8, false),
        ("HTTPS, kept-alive connections", 8, true),
    ] {
        let rate = https_rate(https, &root, &hosts, clients, keep_alive).await;
        println!(
            "hosted {backend}: policy endpoint, {label}, {clients} clients: {rate:.0} fetches/s"
        );
    }
    for clients in [1, 16] {
        let rate = dns_rate(dns.address, clients).await;
        println!("hosted {backend}: DNS listener, UDP, {clients} clients: {rate:.0} queries/s");
    }
}

/// Policy fetches per second by `clients` running for `RUN`.
async fn https_rate(
    address: SocketAddr,
    root: &CertificateDer<'static>,
    hosts: &[String],
    clients: usize,
    keep_alive: bool,
) -> f64 {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (config, done, hosts) = (Arc::clone(&config), Arc::clone(&done), hosts.to_vec());
            tokio::spawn(async move {
                let mut n = client;
                while started.elapsed() < RUN {
                    let host = &hosts[n % hosts.len()];
                    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&config));
                    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
                    let name = ServerName::try_from(host.clone()).unwrap();
                    let tls = connector.connect(name, tcp).await.unwrap();
                    let (mut sender, connection) =
                        hyper::client::conn::http1::handshake(TokioIo::new(tls))
                            .await
                            .unwrap();
                    tokio::spawn(connection);
                    loop {
                        let host = &hosts[n % hosts.len()];
                        n += 1;
                        let request = hyper::Request::get("/.well-known/mta-sts.txt")
                            .header("Host", host)
                            .body(http_body_util::Empty::<bytes::Bytes>::new())
                            .unwrap();
                        let response = sender.send_request(request).await.unwrap();
                        assert_eq!(response.status(), 200);
                        let body = response.into_body().collect().await.unwrap().to_bytes();
                        assert!(body.starts_with(b"version: STSv1"));
                        done.fetch_add(1, Ordering::Relaxed);
                        if !keep_alive || started.elapsed() >= RUN {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// `_mta-sts` TXT queries answered per second for `clients` over UDP.
async fn dns_rate(address: SocketAddr, clients: usize) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                socket.connect(address).await.unwrap();
                let mut buffer = vec![0u8; 4096];
                let mut n = client;
                while started.elapsed() < RUN {
                    let name = format!("d{}.test._mta-sts.{ZONE}.", n % DOMAINS);
                    n += 1;
                    let mut query =
                        Message::new((n % 65_536) as u16, MessageType::Query, OpCode::Query);
                    query.add_query(Query::query(
                        Name::from_str(&name).unwrap(),
                        RecordType::TXT,
                    ));
                    socket.send(&query.to_vec().unwrap()).await.unwrap();
                    let answered =
                        tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buffer))
                            .await;
                    if let Ok(Ok(length)) = answered {
                        let answer = Message::from_vec(&buffer[..length]).unwrap();
                        assert_eq!(answer.answers.len(), 1, "{answer:?}");
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}
