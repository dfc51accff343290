//! The safety check before `enforce` (RFC 8461 section 4: a sender that
//! enforces delivers only to an MX host that matches a pattern and offers
//! STARTTLS with a certificate valid for its name). Each MX host is asked
//! as a sender would: connect, EHLO, STARTTLS, and a handshake verified
//! against Mozilla's roots (and `dns.mta_sts_ca_file`'s).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::dns::resolver::{Answer, DnsClient};

/// An SMTP reply longer than this is not a server we want to talk to.
const MAX_REPLY_BYTES: u64 = 16_384;

/// What one MX host did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MxProbe {
    pub host: String,
    /// STARTTLS offered and the certificate valid for `host`.
    pub ok: bool,
    /// What was seen, in a sentence.
    pub detail: String,
}

/// Probes every MX host (in order) on `port`, each within `timeout`.
pub async fn probe_all(
    dns: &DnsClient,
    tls: &TlsConnector,
    hosts: &[String],
    port: u16,
    timeout: Duration,
    helo_name: &str,
) -> Vec<MxProbe> {
    let probes = hosts.iter().map(|host| async move {
        let result = tokio::time::timeout(timeout, probe(dns, tls, host, port, helo_name)).await;
        let (ok, detail) = match result {
            Ok(Ok(detail)) => (true, detail),
            Ok(Err(problem)) => (false, problem),
            Err(_) => (false, format!("no answer within {} s", timeout.as_secs())),
        };
        MxProbe {
            host: host.clone(),
            ok,
            detail,
        }
    });
    futures_util::future::join_all(probes).await
}

async fn probe(
    dns: &DnsClient,
    tls: &TlsConnector,
    host: &str,
    port: u16,
    helo_name: &str,
) -> Result<String, String> {
    let address: IpAddr = match dns.addresses(host).await {
        Answer::Found(addresses) => addresses.into_iter().next().ok_or("it has no address")?,
        Answer::Missing => return Err("it has no A or AAAA record".to_string()),
        Answer::Failed(reason) => {
            return Err(format!("its address could not be looked up: {reason}"))
        }
    };
    let stream = TcpStream::connect(SocketAddr::new(address, port))
        .await
        .map_err(|error| format!("cannot connect to {address} port {port}: {error}"))?;
    let mut stream = BufReader::new(stream);
    expect(&mut stream, "220", "greeting").await?;
    stream
        .get_mut()
        .write_all(format!("EHLO {helo_name}\r\n").as_bytes())
        .await
        .map_err(|error| format!("the connection broke: {error}"))?;
    let capabilities = expect(&mut stream, "250", "EHLO").await?;
    if !capabilities.iter().any(|line| {
        line.get(4..)
            .is_some_and(|ext| ext.trim().eq_ignore_ascii_case("STARTTLS"))
    }) {
        return Err("it does not offer STARTTLS".to_string());
    }
    stream
        .get_mut()
        .write_all(b"STARTTLS\r\n")
        .await
        .map_err(|error| format!("the connection broke: {error}"))?;
    expect(&mut stream, "220", "STARTTLS").await?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| format!("{host} is not a name a certificate can be checked against"))?;
    let mut secured = tls
        .connect(name, stream.into_inner())
        .await
        .map_err(|error| {
            format!("STARTTLS offered, but the certificate is not valid for {host}: {error}")
        })?;
    let version = secured
        .get_ref()
        .1
        .protocol_version()
        .map(|version| format!("{version:?}").replace("TLSv1_", "TLS 1."))
        .unwrap_or_default();
    let _ = secured.write_all(b"QUIT\r\n").await;
    Ok(format!(
        "STARTTLS with a certificate valid for {host} ({version})"
    ))
}

/// Reads one (multi-line) reply; an error unless it has `code`.
async fn expect<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    code: &str,
    after: &str,
) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    let mut limited = reader.take(MAX_REPLY_BYTES);
    loop {
        let mut line = String::new();
        let read = limited
            .read_line(&mut line)
            .await
            .map_err(|error| format!("the connection broke after {after}: {error}"))?;
        if read == 0 {
            return Err(format!("the server closed the connection after {after}"));
        }
        let line = line.trim_end().to_string();
        let last = line.as_bytes().get(3) != Some(&b'-');
        let matches = line.starts_with(code);
        lines.push(line);
        if last {
            return if matches {
                Ok(lines)
            } else {
                Err(format!(
                    "after {after} it answered {:?}",
                    lines.last().map(String::as_str).unwrap_or_default()
                ))
            };
        }
    }
}
