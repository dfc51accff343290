//! TLS-RPT, failure reports, the inbox and domains, as the dashboard and
//! the API show them.
