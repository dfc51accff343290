//! dmarcd: a self-hosted receiver for DMARC aggregate and failure reports
//! and SMTP TLS reports. See DESIGN.md for the map.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod alerts;
pub mod audit;
pub mod cli;
pub mod config;
pub mod connections;
pub mod decode;
pub mod digests;
pub mod dns;
pub mod domain;
pub mod enrich;
pub mod extract;
pub mod groups;
pub mod hosted;
pub mod import;
pub mod inbox;
pub mod mailbox;
pub mod metrics;
pub mod oidc;
pub mod outbox;
pub mod query;
pub mod report;
pub mod retention;
pub mod scope;
pub mod senders;
pub mod smtp;
pub mod store;
#[doc(hidden)]
pub mod testing;
pub mod tls;
pub mod totp;
pub mod web;
pub mod worker;

pub use decode::Limits;
pub use extract::{extract_reports, extract_reports_from_bytes, ExtractError, ExtractedReport};
pub use report::Report;
