//! Reverse DNS (PTR) lookups with hickory-resolver: the system resolver or
//! configured name servers, a per-lookup timeout, and hickory's in-memory
//! cache (bounded in entries, honouring TTLs) shared by every task.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RData;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::TokioResolver;

use super::EnrichConfig;

/// What a PTR lookup said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtrAnswer {
    /// The first PTR name, and how long it may be trusted.
    Name { name: String, ttl: Duration },
    /// The name server answered that there is no PTR record.
    NoName,
    /// No usable answer (timeout, SERVFAIL, refused, unreachable): try again later.
    Failed(String),
}

pub struct PtrResolver {
    resolver: TokioResolver,
    timeout: Duration,
}

impl PtrResolver {
    /// A resolver for the configured name servers, or the system's.
    pub fn new(config: &EnrichConfig) -> Result<Self, String> {
        let mut options = ResolverOpts::default();
        options.timeout = config.dns_timeout();
        options.attempts = 1;
        options.cache_size = config.dns_cache_entries;
        options.positive_max_ttl = Some(Duration::from_secs(config.dns_max_ttl_seconds));
        options.negative_max_ttl = Some(Duration::from_secs(config.dns_negative_ttl_seconds));
        options.num_concurrent_reqs = 1;
        let resolver = build_resolver("enrich.name_servers", &config.name_servers, options)?;
        Ok(PtrResolver {
            resolver,
            timeout: config.dns_timeout(),
        })
    }

    /// Looks up the PTR name of `ip`; never takes (much) longer than the timeout.
    pub async fn lookup(&self, ip: IpAddr) -> PtrAnswer {
        let answer = tokio::time::timeout(self.timeout, self.resolver.reverse_lookup(ip)).await;
        match answer {
            Err(_) => PtrAnswer::Failed(format!("no answer within {:?}", self.timeout)),
            Ok(Ok(lookup)) => {
                let first = lookup
                    .answers()
                    .iter()
                    .find_map(|record| match &record.data {
                        RData::PTR(ptr) => Some((ptr.0.to_utf8(), record.ttl)),
                        _ => None,
                    });
                match first {
                    Some((name, ttl)) => PtrAnswer::Name {
                        name,
                        ttl: Duration::from_secs(u64::from(ttl)),
                    },
                    None => PtrAnswer::NoName,
                }
            }
            Ok(Err(NetError::Dns(DnsError::NoRecordsFound(no_records))))
                if matches!(
                    no_records.response_code,
                    ResponseCode::NXDomain | ResponseCode::NoError
                ) =>
            {
                PtrAnswer::NoName
            }
            Ok(Err(error)) => PtrAnswer::Failed(error.to_string()),
        }
    }
}

/// `192.0.2.53`, `192.0.2.53:5353`, `2001:db8::53` or `[2001:db8::53]:5353`
/// (UDP, and TCP for answers too large for a datagram).
/// A resolver for `name_servers` (named by `setting` in errors), or the
/// system's when the list is empty: the PTR lookups and the posture checks
/// build theirs alike, with their own options.
pub(crate) fn build_resolver(
    setting: &str,
    name_servers: &[String],
    options: ResolverOpts,
) -> Result<TokioResolver, String> {
    let builder = if name_servers.is_empty() {
        TokioResolver::builder_tokio()
            .map_err(|error| format!("cannot read the system resolver configuration: {error}"))?
    } else {
        let servers = name_servers
            .iter()
            .map(|text| parse_name_server_for(setting, text))
            .collect::<Result<Vec<_>, _>>()?;
        let resolver_config = ResolverConfig::from_parts(None, Vec::new(), servers);
        TokioResolver::builder_with_config(resolver_config, TokioRuntimeProvider::default())
    };
    builder
        .with_options(options)
        .build()
        .map_err(|error| format!("cannot start the DNS resolver: {error}"))
}

/// A name server setting (`192.0.2.53`, `192.0.2.53:5353`, `[::1]:53`),
/// naming `setting` in its error.
pub(crate) fn parse_name_server_for(setting: &str, text: &str) -> Result<NameServerConfig, String> {
    let text = text.trim();
    let address = if let Ok(ip) = text.parse::<IpAddr>() {
        SocketAddr::new(ip, 53)
    } else {
        text.parse::<SocketAddr>()
            .map_err(|_| format!("{setting}: {text:?} is not an IP address or IP:port"))?
    };
    let connection = |protocol| {
        let mut connection = ConnectionConfig::new(protocol);
        connection.port = address.port();
        connection
    };
    Ok(NameServerConfig::new(
        address.ip(),
        true,
        vec![
            connection(ProtocolConfig::Udp),
            connection(ProtocolConfig::Tcp),
        ],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_servers_with_and_without_ports() {
        let server = parse_name_server_for("enrich.name_servers", "127.0.0.1:5353").unwrap();
        assert_eq!(server.ip, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(server.connections[0].port, 5353);
        assert_eq!(
            parse_name_server_for("enrich.name_servers", "192.0.2.1")
                .unwrap()
                .connections[0]
                .port,
            53
        );
        assert_eq!(
            parse_name_server_for("enrich.name_servers", "[::1]:54")
                .unwrap()
                .connections[1]
                .port,
            54
        );
        assert!(parse_name_server_for("enrich.name_servers", "dns.example").is_err());
    }
}
