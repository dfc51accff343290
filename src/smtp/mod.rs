//! SMTP intake: be the MX for rua/ruf/TLS-RPT mailboxes.

pub mod budget;
mod recipients;
pub mod server;
pub mod session;

pub use recipients::RecipientPolicy;
pub use server::{SmtpConfig, SmtpError, SmtpServer};
