//! Domain posture: the DNS records that make reports arrive and mail
//! pass (DMARC, SPF, DKIM, MX, MTA-STS, TLS-RPT, BIMI), looked up and
//! judged. The record parsers (`dmarc`, `spf`, `dkim`, `mta_sts`,
//! `tlsrpt`, `tags`) are pure; `resolver`, `spf_tree` and `https` do the
//! IO; `check` puts one domain's check together.

pub mod check;
pub mod config;
pub mod dkim;
pub mod dmarc;
pub mod finding;
pub mod https;
pub mod mta_sts;
pub mod resolver;
pub mod schedule;
pub mod spf;
pub mod spf_tree;
pub mod tags;
pub mod tlsrpt;

pub use check::{Grade, Observation, PostureChecker, PostureReport, ReportTargets};
pub use config::DnsConfig;
pub use finding::{Finding, RecordFix, RecordKind, Severity};
pub use schedule::PostureSchedule;
