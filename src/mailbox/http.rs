//! One POST over hyper's HTTP/1 client (already in the tree for the
//! MTA-STS fetch): a form to an OAuth2 token endpoint, a webhook's JSON.
//! HTTPS with Mozilla's roots plus an optional CA file; plain HTTP only
//! where the caller's config allows it (loopback).

use std::path::Path;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

/// POSTs `body` (`application/x-www-form-urlencoded`) to `url`; returns the
/// status and up to `max_bytes` of the answer.
pub async fn post_form(
    url: &str,
    body: String,
    ca_file: Option<&Path>,
    max_bytes: usize,
) -> Result<(u16, Vec<u8>), String> {
    post(
        url,
        "application/x-www-form-urlencoded",
        &[(
            hyper::header::ACCEPT.as_str(),
            "application/json".to_string(),
        )],
        body,
        ca_file,
        max_bytes,
    )
    .await
}

/// GETs `url` (asking for JSON); returns the status and up to
/// `max_bytes` of the answer.
pub async fn get_json(
    url: &str,
    ca_file: Option<&Path>,
    max_bytes: usize,
) -> Result<(u16, Vec<u8>), String> {
    let accept = [(
        hyper::header::ACCEPT.as_str(),
        "application/json".to_string(),
    )];
    send(
        hyper::Method::GET,
        url,
        None,
        &accept,
        String::new(),
        ca_file,
        max_bytes,
    )
    .await
}

/// POSTs `body` as `content_type` with `headers` to `url`; returns the
/// status and up to `max_bytes` of the answer.
pub(crate) async fn post(
    url: &str,
    content_type: &str,
    headers: &[(&str, String)],
    body: String,
    ca_file: Option<&Path>,
    max_bytes: usize,
) -> Result<(u16, Vec<u8>), String> {
    send(
        hyper::Method::POST,
        url,
        Some(content_type),
        headers,
        body,
        ca_file,
        max_bytes,
    )
    .await
}

async fn send(
    method: hyper::Method,
    url: &str,
    content_type: Option<&str>,
    headers: &[(&str, String)],
    body: String,
    ca_file: Option<&Path>,
    max_bytes: usize,
) -> Result<(u16, Vec<u8>), String> {
    let parsed = url::Url::parse(url).map_err(|error| format!("not a URL: {error}"))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| "the URL has no host".to_string())?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let https = parsed.scheme() == "https";
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| "the URL has no port".to_string())?;
    let path = match parsed.query() {
        Some(query) => format!("{}?{query}", parsed.path()),
        None => parsed.path().to_string(),
    };
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|error| format!("cannot connect: {error}"))?;
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, parsed.authority())
        .header(
            hyper::header::USER_AGENT,
            concat!("dmarcd/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(content_type) = content_type {
        request = request.header(hyper::header::CONTENT_TYPE, content_type);
    }
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|error| error.to_string())?;
    if https {
        let connector = super::tls::connector(ca_file).map_err(|error| error.message)?;
        let name = ServerName::try_from(host.clone())
            .map_err(|_| format!("{host} is not a valid TLS server name"))?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|error| format!("the TLS handshake failed: {error}"))?;
        exchange(TokioIo::new(tls), request, max_bytes).await
    } else {
        exchange(TokioIo::new(tcp), request, max_bytes).await
    }
}

async fn exchange<T>(
    io: T,
    request: hyper::Request<Full<Bytes>>,
    max_bytes: usize,
) -> Result<(u16, Vec<u8>), String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|error| error.to_string())?;
    let driver = tokio::spawn(connection);
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| error.to_string())?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| error.to_string())?;
            if let Some(data) = frame.data_ref() {
                if bytes.len() + data.len() > max_bytes {
                    return Err(format!("the answer is larger than {max_bytes} bytes"));
                }
                bytes.extend_from_slice(data);
            }
        }
        Ok((status, bytes))
    }
    .await;
    driver.abort();
    result
}
