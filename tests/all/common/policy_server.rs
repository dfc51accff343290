//! An HTTPS server on loopback for MTA-STS policy fetches: a test CA of its
//! own (written to a PEM file for `dns.mta_sts_ca_file`), one certificate
//! for the hosts it serves, and an answer per Host header.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone)]
pub enum PolicyAnswer {
    /// 200, text/plain, this body.
    Policy(String),
    /// 301 to this location.
    Redirect(String),
    /// 200 with this content type and body.
    Typed(&'static str, String),
    /// Served with a certificate that does not name the host.
    WrongCertificate,
}

pub struct PolicyServer {
    port: u16,
    ca_file: tempfile::NamedTempFile,
    task: tokio::task::JoinHandle<()>,
}

impl PolicyServer {
    /// Serves `answers` by host name (`mta-sts.example.test`).
    pub async fn start(answers: Vec<(String, PolicyAnswer)>) -> PolicyServer {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "dmarcd test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let names: Vec<String> = answers
            .iter()
            .filter(|(_, answer)| !matches!(answer, PolicyAnswer::WrongCertificate))
            .map(|(host, _)| host.clone())
            .chain(["unrelated.test".to_string()])
            .collect();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(names)
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let mut ca_file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut ca_file, ca.pem().as_bytes()).unwrap();
        let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answers: Arc<HashMap<String, PolicyAnswer>> = Arc::new(answers.into_iter().collect());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let answers = Arc::clone(&answers);
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16_384 {
                        match tls.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => head.extend_from_slice(&buffer[..read]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                    let host = head
                        .lines()
                        .find_map(|line| line.strip_prefix("host:"))
                        .map(|host| host.trim().to_string())
                        .unwrap_or_default();
                    let reply = match answers.get(&host) {
                        Some(PolicyAnswer::Policy(body)) => {
                            response("200 OK", "text/plain", body, "")
                        }
                        Some(PolicyAnswer::Typed(media_type, body)) => {
                            response("200 OK", media_type, body, "")
                        }
                        Some(PolicyAnswer::Redirect(location)) => response(
                            "301 Moved Permanently",
                            "text/plain",
                            "",
                            &format!("Location: {location}\r\n"),
                        ),
                        _ => response("404 Not Found", "text/plain", "", ""),
                    };
                    let _ = tls.write_all(reply.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        PolicyServer {
            port,
            ca_file,
            task,
        }
    }

    /// For `dns.mta_sts_https_port`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// For `dns.mta_sts_ca_file`.
    pub fn ca_file(&self) -> PathBuf {
        self.ca_file.path().to_path_buf()
    }
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn response(status: &str, media_type: &str, body: &str, extra: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {media_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    )
}
