//! One HTTP(S) GET of a database file: a size limit read frame by frame
//! (a body past it is refused before it is all in memory), a deadline for
//! the whole exchange, and a few redirects (download mirrors use them).
//! HTTPS trusts Mozilla's roots, compiled in.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use url::Url;

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;

/// What a server answered.
#[derive(Debug)]
pub(crate) enum Fetched {
    Body(Vec<u8>),
    /// 404 or 410: not published (yet).
    Missing,
}

/// GETs `url`, reading at most `max_bytes` of body within `timeout`.
/// Errors are sentences naming the URL.
pub(crate) async fn get(url: &str, max_bytes: u64, timeout: Duration) -> Result<Fetched, String> {
    match tokio::time::timeout(timeout, follow(url, max_bytes)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "{url} did not finish within {} seconds",
            timeout.as_secs()
        )),
    }
}

async fn follow(url: &str, max_bytes: u64) -> Result<Fetched, String> {
    let mut current = Url::parse(url).map_err(|error| format!("{url} is not a URL: {error}"))?;
    for _ in 0..=MAX_REDIRECTS {
        match once(&current, max_bytes).await? {
            Answer::Redirect(location) => {
                let next = current
                    .join(&location)
                    .map_err(|error| format!("{current} redirects to {location:?}: {error}"))?;
                // Never from HTTPS down to plain HTTP.
                if current.scheme() == "https" && next.scheme() != "https" {
                    return Err(format!("{current} redirects to {next}, which is not HTTPS"));
                }
                current = next;
            }
            Answer::Done(fetched) => return Ok(fetched),
        }
    }
    Err(format!("{url} redirects more than {MAX_REDIRECTS} times"))
}

enum Answer {
    Done(Fetched),
    Redirect(String),
}

async fn once(url: &Url, max_bytes: u64) -> Result<Answer, String> {
    let https = match url.scheme() {
        "https" => true,
        "http" => false,
        other => return Err(format!("{url}: {other}: is not http: or https:")),
    };
    let host = url
        .host_str()
        .ok_or_else(|| format!("{url} names no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("{url} names no port"))?;
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|error| format!("{url}: cannot connect to {host}:{port}: {error}"))?;
    let mut path = url.path().to_string();
    if let Some(query) = url.query() {
        path = format!("{path}?{query}");
    }
    let authority = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(
            hyper::header::USER_AGENT,
            concat!("dmarcd/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|error| format!("{url}: {error}"))?;
    if https {
        let name = ServerName::try_from(host.clone())
            .map_err(|_| format!("{host} is not a valid TLS server name"))?;
        let tls = connector()?
            .connect(name, tcp)
            .await
            .map_err(|error| format!("{url}: the TLS handshake failed: {error}"))?;
        exchange(url, TokioIo::new(tls), request, max_bytes).await
    } else {
        exchange(url, TokioIo::new(tcp), request, max_bytes).await
    }
}

fn connector() -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| format!("cannot set up TLS: {error}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

async fn exchange<T>(
    url: &Url,
    io: T,
    request: hyper::Request<Empty<Bytes>>,
    max_bytes: u64,
) -> Result<Answer, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|error| format!("{url}: {error}"))?;
    let driver = tokio::spawn(connection);
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| format!("{url}: {error}"))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .ok_or_else(|| format!("{url} answered {status} without a Location"))?;
            return Ok(Answer::Redirect(location.to_string()));
        }
        if status == hyper::StatusCode::NOT_FOUND || status == hyper::StatusCode::GONE {
            return Ok(Answer::Done(Fetched::Missing));
        }
        if status != hyper::StatusCode::OK {
            return Err(format!("{url} answered {status}"));
        }
        let declared = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > max_bytes) {
            return Err(format!(
                "{url} is {} bytes, more than the {max_bytes} allowed (geo.max_download_bytes)",
                declared.unwrap_or_default()
            ));
        }
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| format!("{url}: the download broke off: {error}"))?;
            if let Some(data) = frame.data_ref() {
                if (bytes.len() + data.len()) as u64 > max_bytes {
                    return Err(format!(
                        "{url} sent more than the {max_bytes} bytes allowed (geo.max_download_bytes)"
                    ));
                }
                bytes.extend_from_slice(data);
            }
        }
        if declared.is_some_and(|length| length != bytes.len() as u64) {
            return Err(format!(
                "{url} broke off after {} of {} bytes",
                bytes.len(),
                declared.unwrap_or_default()
            ));
        }
        Ok(Answer::Done(Fetched::Body(bytes)))
    }
    .await;
    driver.abort();
    result
}
