//! The web listener: plain HTTP (behind a TLS-terminating proxy, or on
//! loopback), or HTTPS itself with certificate files. RFC 8460 section 3
//! has TLS reports POSTed to an `https:` URI, so a small install can take
//! them with no proxy at all.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;

use crate::smtp::tls::TlsSource;

/// Handshakes in progress at once; more connections wait in the kernel's
/// backlog, so a flood of silent clients cannot exhaust memory.
const MAX_HANDSHAKES: usize = 256;

/// The client's address, for the rate limits on sign-in and TLS-RPT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// Accepts TCP connections and hands on those whose TLS handshake
/// finished. Handshakes run in tasks of their own, each with a deadline, so
/// one slow client holds up nobody else.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(
        tcp: TcpListener,
        tls: Arc<TlsSource>,
        handshake_timeout: Duration,
    ) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (sender, ready) = mpsc::channel(64);
        let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of descriptors and the like: wait, then go on.
                        tracing::warn!(%error, "web listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if sender.is_closed() {
                    return;
                }
                let acceptor = tls.acceptor();
                let sender = sender.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let _ = sender.send((stream, peer)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "web: TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "web: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept task ended (the runtime is shutting down).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// What the web app listens on.
pub enum WebListener {
    Plain(TcpListener),
    Tls(TlsListener),
}

impl WebListener {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            WebListener::Plain(tcp) => tcp.local_addr(),
            WebListener::Tls(tls) => tls.local_addr(),
        }
    }
}

impl From<TcpListener> for WebListener {
    fn from(tcp: TcpListener) -> Self {
        WebListener::Plain(tcp)
    }
}
