//! The integration tests, in one binary so that a test build links the crate
//! once. Each module is one subject; shared builders are in `common`.
//!
//! Run one subject with `cargo test --test all smtp::` (module paths filter).

mod common;

mod account;
mod acme;
mod alert_rules;
mod alerts;
mod api;
mod audit;
mod browser;
mod cli_import;
mod compliance;
mod corpus;
mod dashboard;
mod digests;
mod email_shapes;
mod enrich;
mod failure_redaction;
mod filters;
mod first_run;
mod geo_update;
mod grafana;
mod groups;
mod hostile_input;
mod https;
mod isolation;
mod mailbox;
mod mta_sts;
mod nodes;
mod outbox;
mod outbox_process;
mod parse_memory;
mod posture;
mod posture_history;
mod raw_compression;
mod record_retention;
mod replicas;
mod report_pages;
mod report_storage;
mod retention;
mod rollups;
mod roundtrip;
mod senders;
mod shapes;
mod smtp;
mod sso;
mod storage;
mod worker;
mod world_map;
