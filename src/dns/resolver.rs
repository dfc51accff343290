//! The posture checks' one door to DNS: hickory-resolver against the
//! configured name servers (or the system's), with a timeout per question,
//! answers sorted into found / missing / failed.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_resolver::config::ResolverOpts;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::TokioResolver;

use super::config::DnsConfig;

/// What DNS said about one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    Found(Vec<T>),
    /// NXDOMAIN, or the name exists without records of the type (both
    /// are "void lookups" to SPF).
    Missing,
    /// No usable answer (timeout, SERVFAIL, refused): could not check.
    Failed(String),
}

impl<T> Answer<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Answer<U> {
        match self {
            Answer::Found(items) => Answer::Found(items.into_iter().map(f).collect()),
            Answer::Missing => Answer::Missing,
            Answer::Failed(reason) => Answer::Failed(reason),
        }
    }
}

/// A TXT record: its character-strings joined (RFC 7208 section 3.3 and
/// RFC 7489 section 6.1 read them as one text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txt {
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    pub preference: u16,
    /// Lower-cased, without the trailing dot; empty for a null MX (RFC 7505).
    pub exchange: String,
}

pub struct DnsClient {
    resolver: TokioResolver,
    timeout: Duration,
    queries: AtomicU64,
}

impl DnsClient {
    /// A client for `dns.name_servers`, or the system resolver.
    pub fn new(config: &DnsConfig) -> Result<Self, String> {
        let mut options = ResolverOpts::default();
        options.timeout = config.timeout();
        options.attempts = config.attempts;
        // Answers are reused for at most cache_seconds: a check after a
        // fix must see the fix, whatever TTL the old record had.
        options.positive_max_ttl = Some(Duration::from_secs(config.cache_seconds));
        options.negative_max_ttl = Some(Duration::from_secs(config.cache_seconds));
        options.cache_size = 4096;
        options.num_concurrent_reqs = 1;
        let resolver =
            crate::enrich::build_resolver("dns.name_servers", &config.name_servers, options)?;
        // Every attempt may take the whole timeout.
        let timeout = config.timeout() * (config.attempts as u32 + 1);
        Ok(DnsClient {
            resolver,
            timeout,
            queries: AtomicU64::new(0),
        })
    }

    /// Questions asked so far (for benchmarks and logs).
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    pub async fn txt(&self, name: &str) -> Answer<Txt> {
        self.lookup(name, RecordType::TXT, |data| match data {
            RData::TXT(txt) => {
                let bytes: Vec<u8> = txt
                    .txt_data
                    .iter()
                    .flat_map(|part| part.iter().copied())
                    .collect();
                Some(Txt {
                    text: String::from_utf8_lossy(&bytes).into_owned(),
                })
            }
            _ => None,
        })
        .await
    }

    /// MX hosts, lowest preference first.
    pub async fn mx(&self, name: &str) -> Answer<MxHost> {
        let mut answer = self
            .lookup(name, RecordType::MX, |data| match data {
                RData::MX(mx) => Some(MxHost {
                    preference: mx.preference,
                    exchange: mx
                        .exchange
                        .to_utf8()
                        .trim_end_matches('.')
                        .to_ascii_lowercase(),
                }),
                _ => None,
            })
            .await;
        if let Answer::Found(hosts) = &mut answer {
            hosts.sort_by(|a, b| (a.preference, &a.exchange).cmp(&(b.preference, &b.exchange)));
        }
        answer
    }

    pub async fn a(&self, name: &str) -> Answer<IpAddr> {
        self.lookup(name, RecordType::A, |data| match data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .await
    }

    pub async fn aaaa(&self, name: &str) -> Answer<IpAddr> {
        self.lookup(name, RecordType::AAAA, |data| match data {
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .await
    }

    /// The target of a CNAME at `name` (lower case, no final dot).
    pub async fn cname(&self, name: &str) -> Answer<String> {
        self.lookup(name, RecordType::CNAME, |data| match data {
            RData::CNAME(target) => Some(
                target
                    .0
                    .to_utf8()
                    .trim_end_matches('.')
                    .to_ascii_lowercase(),
            ),
            _ => None,
        })
        .await
    }

    /// A and AAAA together: found if either has addresses, failed if
    /// either failed and the other found nothing.
    pub async fn addresses(&self, name: &str) -> Answer<IpAddr> {
        let (v4, v6) = tokio::join!(self.a(name), self.aaaa(name));
        match (v4, v6) {
            (Answer::Found(mut v4), Answer::Found(v6)) => {
                v4.extend(v6);
                Answer::Found(v4)
            }
            (Answer::Found(found), _) | (_, Answer::Found(found)) => Answer::Found(found),
            (Answer::Failed(reason), _) | (_, Answer::Failed(reason)) => Answer::Failed(reason),
            _ => Answer::Missing,
        }
    }

    async fn lookup<T>(
        &self,
        name: &str,
        record_type: RecordType,
        read: impl Fn(&RData) -> Option<T>,
    ) -> Answer<T> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        // Always a fully qualified name: no search domains, one question.
        let Ok(fqdn) = Name::from_utf8(format!("{}.", name.trim_end_matches('.'))) else {
            return Answer::Failed(format!("{name:?} is not a DNS name"));
        };
        let lookup =
            tokio::time::timeout(self.timeout, self.resolver.lookup(fqdn, record_type)).await;
        match lookup {
            Err(_) => Answer::Failed(format!("no answer within {:?}", self.timeout)),
            Ok(Ok(lookup)) => {
                let found: Vec<T> = lookup
                    .answers()
                    .iter()
                    .filter_map(|record| read(&record.data))
                    .collect();
                if found.is_empty() {
                    Answer::Missing
                } else {
                    Answer::Found(found)
                }
            }
            Ok(Err(NetError::Dns(DnsError::NoRecordsFound(no_records))))
                if matches!(
                    no_records.response_code,
                    ResponseCode::NXDomain | ResponseCode::NoError
                ) =>
            {
                Answer::Missing
            }
            Ok(Err(NetError::Dns(DnsError::NoRecordsFound(no_records)))) => Answer::Failed(
                format!("the name server answered {}", no_records.response_code),
            ),
            Ok(Err(error)) => Answer::Failed(error.to_string()),
        }
    }
}
