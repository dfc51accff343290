//! The web listener: plain HTTP (behind a TLS-terminating proxy, or on
//! loopback), or HTTPS itself with certificate files (RFC 8460 section 3
//! has TLS reports POSTed to an `https:` URI, so a small install can take
//! them with no proxy at all).
//!
//! A thin accept loop of its own rather than `axum::serve`, for the limits
//! that keep slow clients from taking the process down: ~20,000
//! connections each sending one header line and then nothing once used up
//! every descriptor, and SMTP stopped greeting. Connections are capped in
//! all and per client address (over a cap: a 503, then closed), a request
//! header must arrive within `web.header_read_timeout_seconds` (hyper's
//! timer, which also bounds a kept-alive connection waiting for its next
//! request), and a TLS handshake within its own deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::{TrustedProxies, WebConfig};
use crate::connections::{IpSlot, PerIpLimit};
use crate::hosted::certs::HostCertificates;
use crate::tls::TlsSource;

/// How a listener does TLS: one certificate (files, reloaded), or a
/// configuration chosen per connection from its ClientHello (the hosted
/// MTA-STS hosts, by SNI).
#[derive(Clone)]
pub enum Tls {
    Fixed(Arc<TlsSource>),
    PerHost(Arc<HostCertificates>),
}

/// The client's address, for the rate limits on sign-in and TLS-RPT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// The limits of one web listener (from `[web]`).
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub header_read_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    /// How long requests in flight may take to finish at shutdown (a
    /// request's own time limit); connections still open then are closed.
    pub shutdown_grace: Duration,
    /// Reverse proxies: every client behind one shares its address, so the
    /// per-address cap does not apply to them.
    pub proxies: Arc<TrustedProxies>,
}

impl ConnectionLimits {
    pub fn from_config(config: &WebConfig) -> Self {
        ConnectionLimits {
            max_connections: config.max_connections.max(1),
            max_connections_per_ip: config.max_connections_per_ip.max(1),
            header_read_timeout: Duration::from_secs(config.header_read_timeout_seconds.max(1)),
            tls_handshake_timeout: Duration::from_secs(config.tls_handshake_timeout_seconds.max(1)),
            shutdown_grace: Duration::from_secs(config.request_timeout_seconds.max(1)),
            proxies: Arc::new(
                TrustedProxies::parse(&config.trusted_proxies)
                    .expect("web.trusted_proxies is checked with the config"),
            ),
        }
    }
}

/// What the web app listens on, and how.
pub struct WebListener {
    tcp: TcpListener,
    tls: Option<Tls>,
    limits: ConnectionLimits,
}

impl WebListener {
    /// Plain HTTP on `tcp` with the limits of `config`.
    pub fn new(tcp: TcpListener, config: &WebConfig) -> Self {
        WebListener {
            tcp,
            tls: None,
            limits: ConnectionLimits::from_config(config),
        }
    }

    /// HTTPS with certificates from `tls`.
    pub fn with_tls(mut self, tls: Arc<TlsSource>) -> Self {
        self.tls = Some(Tls::Fixed(tls));
        self
    }

    /// HTTPS with a certificate per host name (`hosted::certs`).
    pub fn with_host_certificates(mut self, certificates: Arc<HostCertificates>) -> Self {
        self.tls = Some(Tls::PerHost(certificates));
        self
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// A plain listener with the default limits.
impl From<TcpListener> for WebListener {
    fn from(tcp: TcpListener) -> Self {
        WebListener::new(tcp, &WebConfig::default())
    }
}

/// How long to wait before accepting again after accept failed.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The answer to a connection over a cap, written if the socket takes it
/// at once (a fresh socket always does), then the connection is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\
Content-Type: text/plain\r\nContent-Length: 30\r\nConnection: close\r\n\r\n\
Too many connections; retry.\r\n";

/// Serves `router` on `listener` until `shutdown` turns true; requests in
/// flight finish first.
pub(super) async fn serve(
    listener: WebListener,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let WebListener { tcp, tls, limits } = listener;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = PerIpLimit::new(limits.max_connections_per_ip);
    let (closing, closing_watch) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = tcp.accept() => accepted,
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, say: the connection waits in the
                // backlog; retrying at once would only spin.
                tracing::warn!(%error, "web listener: accept failed");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, "web: refused a connection past web.max_connections");
            refuse(stream, tls.is_none());
            continue;
        };
        let ip_slot = if limits.proxies.trusts(peer.ip()) {
            None
        } else {
            match per_ip.claim(peer.ip()) {
                Some(ip_slot) => Some(ip_slot),
                None => {
                    tracing::debug!(%peer, "web: refused a connection past web.max_connections_per_ip");
                    refuse(stream, tls.is_none());
                    continue;
                }
            }
        };
        let connection = Connection {
            peer,
            router: router.clone(),
            limits: limits.clone(),
            closing: closing_watch.clone(),
            _slots: (slot, ip_slot),
        };
        connections.spawn(connection.run(stream, tls.clone()));
    }
    drop(tcp);
    let _ = closing.send(true);
    let finished = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    });
    if finished.await.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "web connections still open after the shutdown grace were closed"
        );
        connections.abort_all();
    }
    Ok(())
}

/// Says "busy" (in plain HTTP, if the socket takes it at once: a TLS
/// client could not read it) and closes the connection.
fn refuse(stream: TcpStream, plain: bool) {
    if plain {
        let _ = stream.try_write(BUSY);
    }
}

/// Reads the ClientHello, then finishes the handshake with the
/// configuration its server name and ALPN call for.
async fn per_host_handshake(
    stream: TcpStream,
    certificates: &HostCertificates,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    let start =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
    let (server_name, alpn) = {
        let hello = start.client_hello();
        let server_name = hello.server_name().map(str::to_string);
        let alpn: Vec<Vec<u8>> = hello
            .alpn()
            .map(|protocols| protocols.map(<[u8]>::to_vec).collect())
            .unwrap_or_default();
        (server_name, alpn)
    };
    let offered: Vec<&[u8]> = alpn.iter().map(Vec::as_slice).collect();
    let Some(config) = certificates
        .config_for(server_name.as_deref(), &offered)
        .await
    else {
        return Err(std::io::Error::other(format!(
            "no certificate for {}",
            server_name.as_deref().unwrap_or("a client without SNI")
        )));
    };
    start.into_stream(config).await
}

/// One accepted connection and what it holds.
struct Connection {
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    closing: watch::Receiver<bool>,
    /// Its places under the caps, given back when it ends.
    _slots: (OwnedSemaphorePermit, Option<IpSlot>),
}

impl Connection {
    async fn run(self, stream: TcpStream, tls: Option<Tls>) {
        let _ = stream.set_nodelay(true);
        let Some(tls) = tls else {
            return self.http(TokioIo::new(stream)).await;
        };
        let handshake = async {
            match tls {
                Tls::Fixed(source) => source.acceptor().accept(stream).await,
                Tls::PerHost(certificates) => per_host_handshake(stream, &certificates).await,
            }
        };
        match tokio::time::timeout(self.limits.tls_handshake_timeout, handshake).await {
            Ok(Ok(stream)) => self.http(TokioIo::new(stream)).await,
            Ok(Err(error)) => {
                tracing::debug!(peer = %self.peer, %error, "web: TLS handshake failed")
            }
            Err(_) => tracing::debug!(peer = %self.peer, "web: TLS handshake timed out"),
        }
    }

    /// HTTP/1.1 on `io` until the client or the server closes it.
    async fn http<I>(mut self, io: I)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let peer = self.peer;
        let router = self.router.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut request = request.map(Body::new);
            request
                .extensions_mut()
                .insert(ConnectInfo(ClientAddr(peer)));
            // The router is always ready: no `poll_ready` is needed.
            tower_service::Service::call(&mut router.clone(), request)
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout);
        let connection = builder.serve_connection(io, service);
        tokio::pin!(connection);
        let mut closing = false;
        loop {
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(error) = served {
                        tracing::debug!(%peer, %error, "web: connection ended");
                    }
                    return;
                }
                // Shutdown: the request in flight is answered, then the
                // connection closes (an idle one at once).
                _ = self.closing.changed(), if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
