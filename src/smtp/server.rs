//! The socket side of SMTP: accept loop, connection limits, timeouts, and
//! handing complete messages to the inbox. The protocol is in `session`.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::{timeout_at, Instant};

use super::budget::DataBudget;
use super::session::{Event, RecipientPolicy, Session, SessionConfig};
use crate::connections::PerIpLimit;
use crate::inbox::Inbox;
use crate::inbox::{Envelope, Intake};
use crate::tls::{describe, CertificateFiles, TlsError, TlsSource};

/// `[smtp]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// Whether `serve` runs the SMTP listener (default true).
    pub enabled: bool,
    /// Address to listen on (default 127.0.0.1:2525).
    pub listen: String,
    /// Name in the greeting and Received headers (default: the host name).
    pub hostname: Option<String>,
    /// Accepted recipients: `dmarc@example.com` or `@reports.example.com`.
    /// Empty: any recipient, allowed only on a loopback address.
    pub recipients: Vec<String>,
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    pub max_messages_per_connection: usize,
    pub max_errors_per_connection: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Bytes of message data all sessions may hold in memory at once; past
    /// it, new data gets `452 4.3.1` and the sender retries later. At least
    /// `max_message_bytes`.
    pub max_inflight_data_bytes: usize,
    /// Commands outside a mail transaction (NOOP, RSET, VRFY, HELP, EHLO…)
    /// allowed between two messages; then `421` and the session is closed.
    pub max_commands_without_message: usize,
    /// Seconds a whole session may last, however busy it keeps.
    pub session_timeout_seconds: u64,
    /// Seconds to receive a complete command (RFC 5321 §4.5.3.2: 5 minutes).
    pub command_timeout_seconds: u64,
    /// Seconds of silence allowed while receiving message data (RFC: 3 minutes).
    pub data_timeout_seconds: u64,
    /// Seconds for a whole message's data, however it trickles in.
    pub data_total_timeout_seconds: u64,
    /// Seconds given to sessions in flight at shutdown.
    pub shutdown_grace_seconds: u64,
    /// Offer STARTTLS (default true; a self-signed certificate is made when
    /// no files are configured).
    pub starttls: bool,
    /// PEM certificate chain and private key for STARTTLS; reloaded when
    /// they change on disk or on SIGHUP.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Seconds allowed for the TLS handshake.
    pub tls_handshake_timeout_seconds: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            enabled: true,
            listen: "127.0.0.1:2525".to_string(),
            hostname: None,
            recipients: Vec::new(),
            max_message_bytes: 64 * 1024 * 1024,
            max_recipients: 50,
            max_messages_per_connection: 100,
            max_errors_per_connection: 10,
            max_connections: 512,
            max_connections_per_ip: 20,
            max_inflight_data_bytes: 256 * 1024 * 1024,
            max_commands_without_message: 50,
            session_timeout_seconds: 1800,
            command_timeout_seconds: 300,
            data_timeout_seconds: 180,
            data_total_timeout_seconds: 900,
            shutdown_grace_seconds: 30,
            starttls: true,
            tls_cert_file: None,
            tls_key_file: None,
            tls_handshake_timeout_seconds: 30,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("smtp.listen {0:?} is not an address:port")]
    BadListen(String),
    #[error("refusing to listen on {0} with no smtp.recipients configured: that would accept mail for anyone on a public address; set smtp.recipients (e.g. [\"dmarc@example.com\", \"@reports.example.com\"]) or listen on 127.0.0.1")]
    OpenOnPublicAddress(SocketAddr),
    #[error("smtp.max_inflight_data_bytes ({budget}) must be at least smtp.max_message_bytes ({message}): a message of the largest size could never be taken")]
    BudgetBelowMessage { budget: usize, message: usize },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A bound SMTP listener.
pub struct SmtpServer {
    listener: TcpListener,
    shared: Arc<Shared>,
}

struct Shared {
    inbox: Inbox,
    tls: Option<Arc<TlsSource>>,
    session: Arc<SessionConfig>,
    config: SmtpConfig,
    connections: Semaphore,
    per_ip: Arc<PerIpLimit>,
}

impl SmtpServer {
    /// Binds the listener, refusing an open relay-like setup on a public address.
    pub async fn bind(config: SmtpConfig, inbox: Inbox) -> Result<SmtpServer, SmtpError> {
        let address: SocketAddr = config
            .listen
            .parse()
            .map_err(|_| SmtpError::BadListen(config.listen.clone()))?;
        if config.recipients.is_empty() && !address.ip().is_loopback() {
            return Err(SmtpError::OpenOnPublicAddress(address));
        }
        if config.max_inflight_data_bytes < config.max_message_bytes {
            return Err(SmtpError::BudgetBelowMessage {
                budget: config.max_inflight_data_bytes,
                message: config.max_message_bytes,
            });
        }
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| SmtpError::Bind { address, source })?;
        let hostname = config
            .hostname
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".to_string());
        let tls = if config.starttls {
            let files = match (&config.tls_cert_file, &config.tls_key_file) {
                (Some(cert), Some(key)) => Some(CertificateFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                (None, None) => None,
                _ => return Err(TlsError::HalfConfigured.into()),
            };
            Some(TlsSource::load(files, &hostname)?)
        } else {
            None
        };
        let session = Arc::new(SessionConfig {
            hostname,
            recipients: RecipientPolicy::from_entries(&config.recipients),
            max_message_bytes: config.max_message_bytes,
            max_recipients: config.max_recipients,
            max_messages: config.max_messages_per_connection,
            max_errors: config.max_errors_per_connection,
            max_commands_without_message: config.max_commands_without_message,
            tls_available: tls.is_some(),
            budget: DataBudget::new(config.max_inflight_data_bytes),
        });
        let shared = Arc::new(Shared {
            inbox,
            tls,
            session,
            connections: Semaphore::new(config.max_connections),
            per_ip: PerIpLimit::new(config.max_connections_per_ip),
            config,
        });
        Ok(SmtpServer { listener, shared })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The certificate source, to reload on SIGHUP.
    pub fn tls(&self) -> Option<Arc<TlsSource>> {
        self.shared.tls.clone()
    }

    /// Serves until `shutdown` turns true, then lets sessions in flight
    /// finish for up to `shutdown_grace_seconds`, telling new connections
    /// to come back later (`421 4.3.2`). Sessions still open at the end of
    /// the grace period are told the same before they are closed.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut sessions = tokio::task::JoinSet::new();
        let (cut, cut_watch) = watch::channel(false);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            // Out of descriptors, say: the connection waits in the
                            // backlog; retrying at once would only spin.
                            tracing::warn!(%error, "SMTP listener: accept failed");
                            tokio::time::sleep(ACCEPT_RETRY).await;
                            continue;
                        }
                    };
                    let shared = Arc::clone(&self.shared);
                    let stop = Stop { shutdown: shutdown.clone(), cut: cut_watch.clone() };
                    sessions.spawn(async move { shared.handle(stream, peer, stop).await });
                }
                _ = shutdown.changed() => break,
            }
            while sessions.try_join_next().is_some() {}
        }
        let grace = Instant::now() + Duration::from_secs(self.shared.config.shutdown_grace_seconds);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        tokio::spawn(refuse(stream, SHUTTING_DOWN));
                    }
                }
                joined = sessions.join_next() => {
                    if joined.is_none() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(grace) => break,
            }
        }
        tracing::warn!(
            sessions = sessions.len(),
            "SMTP sessions still open after the shutdown grace period are cut"
        );
        let _ = cut.send(true);
        // Each writes its 421 and closes; one whose client reads nothing is dropped.
        if tokio::time::timeout(CUT_WRITE, async {
            while sessions.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            sessions.abort_all();
        }
    }
}

/// How long to wait before accepting again after accept failed.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// How long a session cut at the end of the shutdown grace period, or a
/// connection refused during it, may take to be told so.
const CUT_WRITE: Duration = Duration::from_secs(2);

const SHUTTING_DOWN: &[u8] = b"421 4.3.2 Server shutting down, try again later\r\n";

/// Tells a connection that it cannot be served, and closes it.
async fn refuse(mut stream: TcpStream, reply: &[u8]) {
    let _ = tokio::time::timeout(CUT_WRITE, stream.write_all(reply)).await;
}

/// The signals a session watches: the server is shutting down (finish the
/// message in hand, take no more), and the grace period is over (stop now).
#[derive(Clone)]
struct Stop {
    shutdown: watch::Receiver<bool>,
    cut: watch::Receiver<bool>,
}

/// What a conversation needs besides its stream and protocol state.
struct Conversation {
    ip: IpAddr,
    tls: bool,
    stop: Stop,
    /// When the session's total time runs out.
    session_deadline: Instant,
}

impl Shared {
    async fn handle(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, stop: Stop) {
        let ip = peer.ip();
        // Limits first: a refused client gets a 421 and nothing else.
        let Ok(_permit) = self.connections.try_acquire() else {
            refuse(
                stream,
                b"421 4.3.2 Too many connections, try again later\r\n",
            )
            .await;
            return;
        };
        let Some(_slot) = self.per_ip.claim(ip) else {
            refuse(
                stream,
                b"421 4.7.0 Too many connections from your address, try again later\r\n",
            )
            .await;
            return;
        };
        let _ = stream.set_nodelay(true);
        crate::metrics::count("dmarcd_smtp_sessions_total", &[], 1);
        if let Err(error) = self.session(stream, ip, stop).await {
            tracing::debug!(%peer, %error, "SMTP session ended");
        }
    }

    /// The conversation in clear text, then, after STARTTLS, over TLS.
    async fn session(&self, mut stream: TcpStream, ip: IpAddr, stop: Stop) -> std::io::Result<()> {
        let (mut session, greeting) = Session::new(Arc::clone(&self.session), ip);
        let mut conversation = Conversation {
            ip,
            tls: false,
            stop,
            session_deadline: Instant::now()
                + Duration::from_secs(self.config.session_timeout_seconds),
        };
        let flow = self
            .converse(&mut stream, &mut session, Some(greeting), &conversation)
            .await?;
        let (Flow::StartTls, Some(tls)) = (flow, &self.tls) else {
            return Ok(());
        };
        let handshake = Duration::from_secs(self.config.tls_handshake_timeout_seconds);
        let mut secure = match tokio::time::timeout(handshake, tls.acceptor().accept(stream)).await
        {
            Ok(Ok(secure)) => secure,
            Ok(Err(error)) => {
                tracing::debug!(%ip, %error, "TLS handshake failed");
                return Ok(());
            }
            Err(_) => return Ok(()),
        };
        session.tls_started(describe(secure.get_ref().1));
        conversation.tls = true;
        self.converse(&mut secure, &mut session, None, &conversation)
            .await?;
        Ok(())
    }

    async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        session: &mut Session,
        greeting: Option<Event>,
        conversation: &Conversation,
    ) -> std::io::Result<Flow> {
        let command_timeout = Duration::from_secs(self.config.command_timeout_seconds);
        let data_timeout = Duration::from_secs(self.config.data_timeout_seconds);
        let data_total = Duration::from_secs(self.config.data_total_timeout_seconds);
        // A client that reads no replies must not hold a session either.
        let write_timeout = command_timeout;
        let mut out: Vec<u8> = Vec::new();
        if let Some(Event::Reply(greeting)) = greeting {
            out = greeting;
            flush(stream, &mut out, write_timeout).await?;
        }
        // Small while idle (1,000 idle connections must stay cheap).
        let mut buffer = vec![0u8; 16 * 1024];
        // A deadline per command (not per read): a client trickling one
        // byte at a time cannot hold a connection forever.
        let mut deadline = Instant::now() + command_timeout;
        let mut data_deadline: Option<Instant> = None;
        let mut queue: VecDeque<Event> = VecDeque::new();
        let Stop { shutdown, cut } = &conversation.stop;
        loop {
            while let Some(event) = queue.pop_front() {
                match event {
                    // Pipelined replies go out together.
                    Event::Reply(bytes) => out.extend_from_slice(&bytes),
                    Event::Close => {
                        flush(stream, &mut out, write_timeout).await?;
                        return Ok(Flow::Done);
                    }
                    Event::StartTls => {
                        flush(stream, &mut out, write_timeout).await?;
                        return Ok(Flow::StartTls);
                    }
                    Event::Message(message) => {
                        flush(stream, &mut out, write_timeout).await?;
                        let stored = self.store(&message, conversation).await;
                        queue.push_front(session.message_stored(stored));
                        deadline = Instant::now() + command_timeout;
                        data_deadline = None;
                        // Commands pipelined behind the message.
                        let more = session.feed(&[]);
                        queue.extend(more);
                    }
                }
            }
            flush(stream, &mut out, write_timeout).await?;
            if session.is_closed() {
                return Ok(Flow::Done);
            }
            let shutting_down = *shutdown.borrow() && !session.in_data();
            if shutting_down || *cut.borrow() {
                out.extend_from_slice(SHUTTING_DOWN);
                flush(stream, &mut out, write_timeout).await?;
                return Ok(Flow::Done);
            }
            let read_deadline = if session.in_data() {
                let total = *data_deadline.get_or_insert_with(|| Instant::now() + data_total);
                (Instant::now() + data_timeout).min(total)
            } else {
                data_deadline = None;
                deadline
            };
            let read_deadline = read_deadline.min(conversation.session_deadline);
            let (mut shutdown, mut cut) = (shutdown.clone(), cut.clone());
            let read = tokio::select! {
                read = timeout_at(read_deadline, stream.read(&mut buffer)) => match read {
                    Ok(read) => read?,
                    Err(_) => {
                        out.extend_from_slice(if Instant::now() >= conversation.session_deadline {
                            b"421 4.4.2 Session time limit reached, closing the connection\r\n"
                        } else {
                            b"421 4.4.2 Timeout, closing the connection\r\n"
                        });
                        let _ = flush(stream, &mut out, write_timeout).await;
                        return Ok(Flow::Done);
                    }
                },
                // Idle sessions close promptly at shutdown; one receiving
                // data finishes. When the grace period is over, even that
                // one stops. (A signal whose sender is gone means the same.)
                changed = shutdown.changed(), if !session.in_data() => match changed {
                    Ok(()) => continue,
                    Err(_) => 0,
                },
                changed = cut.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => 0,
                },
            };
            if read == 0 {
                return Ok(Flow::Done);
            }
            let events = session.feed(&buffer[..read]);
            if events.iter().any(|event| matches!(event, Event::Reply(_))) {
                deadline = Instant::now() + command_timeout;
            }
            queue.extend(events);
        }
    }

    /// Commits a received message to the inbox; the inbox id, or why not.
    async fn store(
        &self,
        message: &super::session::ReceivedMessage,
        conversation: &Conversation,
    ) -> Result<i64, String> {
        let envelope = Envelope {
            intake: Intake::Smtp,
            source_name: None,
            peer_ip: Some(conversation.ip),
            helo: message.helo.as_deref().map(clean),
            mail_from: Some(clean(&message.mail_from)),
            rcpt_to: message.rcpt_to.iter().map(|r| clean(r)).collect(),
            tls: conversation.tls,
        };
        // The 250 goes out only after the inbox committed.
        self.inbox
            .accept(&message.data, &envelope)
            .await
            .map(|accepted| accepted.id)
            .map_err(|error| error.to_string())
    }
}

/// Client-supplied envelope text as stored: control characters (a NUL
/// would make PostgreSQL refuse the row, and the sender retry forever)
/// become `?`.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// How a conversation on one stream ended.
enum Flow {
    Done,
    /// The client asked for TLS: continue on a TLS stream.
    StartTls,
}

/// Counts the replies in `bytes` by code (the last line of each reply has
/// a space after its code).
fn count_replies(bytes: &[u8]) {
    for line in bytes.split(|&b| b == b'\n') {
        if line.len() >= 4 && line[..3].iter().all(u8::is_ascii_digit) && line[3] == b' ' {
            let code = std::str::from_utf8(&line[..3]).unwrap_or("000");
            crate::metrics::count("dmarcd_smtp_replies_total", &[("code", code)], 1);
        }
    }
}

/// Writes the replies gathered in `out`, within `limit`.
async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    limit: Duration,
) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    count_replies(out);
    let written = tokio::time::timeout(limit, async {
        stream.write_all(out).await?;
        stream.flush().await
    })
    .await
    .unwrap_or_else(|_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client read no replies",
        ))
    });
    out.clear();
    written
}
