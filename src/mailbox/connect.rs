//! Connecting to a mailbox's IMAP server: TCP, TLS (implicit or
//! STARTTLS), the greeting, signing in, and what the server can do.
//! Every step has the mailbox's timeout and fails with an error that says
//! which step and what to check.

use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;

use async_imap::imap_proto::{Response, Status};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::auth::{sasl_response, Credentials, TokenAuthenticator};
use super::config::{AuthMethod, MailboxConfig, TlsMode};
use super::error::{MailboxError, MailboxErrorKind};

/// A byte stream IMAP runs over: TCP, or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Debug> Io for T {}

pub type Session = async_imap::Session<Box<dyn Io>>;
type Client = async_imap::Client<Box<dyn Io>>;

/// A signed-in connection.
pub struct Connected {
    pub session: Session,
    pub peer: SocketAddr,
    pub tls: bool,
    /// RFC 2177.
    pub idle: bool,
    /// RFC 6851: UID MOVE (else COPY, then delete).
    pub moves: bool,
    /// RFC 4315: UID EXPUNGE removes only the messages named.
    pub uidplus: bool,
}

/// Runs `step` within the mailbox's timeout.
pub async fn timed<T>(
    config: &MailboxConfig,
    doing: &str,
    step: impl Future<Output = Result<T, MailboxError>>,
) -> Result<T, MailboxError> {
    tokio::time::timeout(config.timeout(), step)
        .await
        .map_err(|_| MailboxError::timeout(doing, config.timeout_seconds))?
}

pub async fn connect(
    config: &MailboxConfig,
    credentials: &Credentials,
) -> Result<Connected, MailboxError> {
    let (client, peer) = timed(config, "connecting", open(config)).await?;
    let session = timed(config, "signing in", sign_in(config, client, credentials)).await?;
    let mut connected = Connected {
        session,
        peer,
        tls: config.tls != TlsMode::None,
        idle: false,
        moves: false,
        uidplus: false,
    };
    let capabilities = timed(config, "asking for capabilities", async {
        connected
            .session
            .capabilities()
            .await
            .map_err(|error| MailboxError::imap("listing capabilities", error))
    })
    .await?;
    connected.idle = capabilities.has_str("IDLE");
    connected.moves = capabilities.has_str("MOVE");
    connected.uidplus = capabilities.has_str("UIDPLUS");
    Ok(connected)
}

/// TCP, TLS and the greeting.
async fn open(config: &MailboxConfig) -> Result<(Client, SocketAddr), MailboxError> {
    let address = format!("{}:{}", config.host, config.port());
    let tcp = TcpStream::connect((config.host.as_str(), config.port()))
        .await
        .map_err(|error| {
            MailboxError::new(
                MailboxErrorKind::Connect,
                format!("cannot connect to {address}: {error} (check host and port)"),
            )
        })?;
    let peer = tcp.peer_addr().map_err(|error| {
        MailboxError::new(MailboxErrorKind::Connect, format!("{address}: {error}"))
    })?;
    let client = match config.tls {
        TlsMode::Implicit => {
            let tls = handshake(config, Box::new(tcp)).await?;
            greeted(Client::new(tls), &address).await?
        }
        TlsMode::Starttls => {
            let mut client = greeted(Client::new(Box::new(tcp)), &address).await?;
            client
                .run_command_and_check_ok("STARTTLS", None)
                .await
                .map_err(|error| {
                    MailboxError::new(
                        MailboxErrorKind::Tls,
                        format!("{address} refused STARTTLS ({error}): use tls = \"implicit\" on port 993 if it offers that"),
                    )
                })?;
            Client::new(handshake(config, client.into_inner()).await?)
        }
        TlsMode::None => greeted(Client::new(Box::new(tcp)), &address).await?,
    };
    Ok((client, peer))
}

async fn handshake(
    config: &MailboxConfig,
    stream: Box<dyn Io>,
) -> Result<Box<dyn Io>, MailboxError> {
    let connector = super::tls::connector(config.ca_file.as_deref())?;
    let name = ServerName::try_from(config.host.clone()).map_err(|_| {
        MailboxError::new(
            MailboxErrorKind::Tls,
            format!("{:?} is not a valid TLS server name", config.host),
        )
    })?;
    let tls = connector.connect(name, stream).await.map_err(|error| {
        MailboxError::new(
            MailboxErrorKind::Tls,
            format!(
                "the TLS handshake with {}:{} failed: {error} (a certificate from a private CA needs ca_file)",
                config.host,
                config.port()
            ),
        )
    })?;
    Ok(Box::new(tls))
}

/// Reads the server's greeting: OK goes on, BYE is a refusal.
async fn greeted(mut client: Client, address: &str) -> Result<Client, MailboxError> {
    let greeting = client
        .read_response()
        .await
        .map_err(|error| {
            MailboxError::new(
                MailboxErrorKind::Protocol,
                format!("{address} sent no IMAP greeting: {error}"),
            )
        })?
        .ok_or_else(|| {
            MailboxError::new(
                MailboxErrorKind::Protocol,
                format!("{address} closed the connection before greeting (is it an IMAP server, and is tls right?)"),
            )
        })?;
    match greeting.parsed() {
        Response::Data {
            status: Status::Ok | Status::PreAuth,
            ..
        } => Ok(client),
        other => Err(MailboxError::new(
            MailboxErrorKind::Protocol,
            format!("{address} did not greet as an IMAP server: {other:?}"),
        )),
    }
}

async fn sign_in(
    config: &MailboxConfig,
    client: Client,
    credentials: &Credentials,
) -> Result<Session, MailboxError> {
    match credentials {
        Credentials::Password(password) => client
            .login(&config.user, password)
            .await
            .map_err(|(error, _)| MailboxError::auth(&config.user, "a password", error)),
        Credentials::Token { method, token } => {
            let mechanism = match method {
                AuthMethod::Oauthbearer => "OAUTHBEARER",
                AuthMethod::Xoauth2 | AuthMethod::Password => "XOAUTH2",
            };
            let response = sasl_response(*method, &config.user, &config.host, config.port(), token);
            client
                .authenticate(
                    mechanism,
                    TokenAuthenticator {
                        response: Some(response),
                    },
                )
                .await
                .map_err(|(error, _)| MailboxError::auth(&config.user, mechanism, error))
        }
    }
}
