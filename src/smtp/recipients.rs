//! Which recipients the SMTP listener accepts mail for: a receive-only
//! server takes mail for its report addresses and refuses the rest.

use std::collections::HashSet;

/// Which recipients this server accepts mail for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientPolicy {
    /// Development only: any recipient (bound to loopback).
    Any,
    /// Exact addresses and whole domains, lower-cased.
    Only {
        addresses: HashSet<String>,
        domains: HashSet<String>,
    },
}

impl RecipientPolicy {
    /// From config entries: `dmarc@example.com` or `@reports.example.com`.
    pub fn from_entries(entries: &[String]) -> Self {
        if entries.is_empty() {
            return RecipientPolicy::Any;
        }
        let mut addresses = HashSet::new();
        let mut domains = HashSet::new();
        for entry in entries {
            let entry = entry.trim().to_ascii_lowercase();
            match entry.strip_prefix('@') {
                Some(domain) => domains.insert(domain.to_string()),
                None => addresses.insert(entry),
            };
        }
        RecipientPolicy::Only { addresses, domains }
    }

    pub fn accepts(&self, address: &str) -> bool {
        match self {
            RecipientPolicy::Any => true,
            RecipientPolicy::Only { addresses, domains } => {
                let address = address.to_ascii_lowercase();
                let domain = address.rsplit_once('@').map(|(_, domain)| domain);
                addresses.contains(&address)
                    || domain.is_some_and(|domain| domains.contains(domain))
            }
        }
    }
}
