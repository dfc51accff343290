//! Which address a request comes from, for the rate limits and the logs.
//!
//! Behind a reverse proxy every connection comes from the proxy, so one
//! client's failed sign-ins would lock everyone out. The proxies named in
//! `web.trusted_proxies` are believed about the client: each appends the
//! address it got the request from to `X-Forwarded-For`, so the header is
//! read from the right, over the trusted proxies, to the first address that
//! is not one. What a client writes into the header itself is further left
//! and never read; from a connection that is not a trusted proxy the header
//! is ignored.

use std::net::IpAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use ipnet::IpNet;

use super::{AppState, ClientAddr};

/// The addresses and networks of the reverse proxies in front.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `web.trusted_proxies`: IP addresses or CIDR blocks (host
    /// bits cleared: `192.0.2.5/24` is `192.0.2.0/24`).
    pub fn parse(list: &[String]) -> Result<Self, String> {
        list.iter()
            .map(|text| {
                let text = text.trim();
                text.parse::<IpAddr>()
                    .map(IpNet::from)
                    .or_else(|_| text.parse::<IpNet>().map(|network| network.trunc()))
                    .map_err(|_| {
                        format!(
                            "web.trusted_proxies: {text:?} is not an IP address or a CIDR block"
                        )
                    })
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    pub(crate) fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(&ip))
    }

    /// The client of a request that arrived from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            // Something that is not an address: the proxy that wrote it is
            // the nearest hop known.
            let Some(ip) = parse_hop(hop) else { break };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// `192.0.2.7`, `2001:db8::1` or `[2001:db8::1]`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let hop = hop
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(hop);
    hop.parse().ok()
}

/// The request's client address (`TrustedProxies::client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ConnectInfo(ClientAddr(peer)) = parts
            .extensions
            .get::<ConnectInfo<ClientAddr>>()
            .copied()
            .ok_or((
                StatusCode::INTERNAL_SERVER_ERROR,
                "the listener did not record the client's address",
            ))?;
        Ok(ClientIp(
            state.trusted_proxies.client(peer.ip(), &parts.headers),
        ))
    }
}

/// The request's client address when the listener recorded one (a router
/// driven without a listener has none): what the audit log says a change
/// came from. Never rejects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address(pub Option<IpAddr>);

impl FromRequestParts<AppState> for Address {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Address(
            ClientIp::from_request_parts(parts, state)
                .await
                .ok()
                .map(|ClientIp(ip)| ip),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append("x-forwarded-for", value.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_trusted_proxies_are_believed() {
        let proxies = TrustedProxies::parse(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap();
        // Straight from a client: its own header means nothing.
        assert_eq!(
            proxies.client(ip("198.51.100.9"), &headers(&["192.0.2.1"])),
            ip("198.51.100.9")
        );
        // Through the proxy: the address it saw.
        assert_eq!(
            proxies.client(ip("127.0.0.1"), &headers(&["198.51.100.9"])),
            ip("198.51.100.9")
        );
        // A client that sends the header itself, through two proxies: the
        // rightmost address that is not a proxy.
        assert_eq!(
            proxies.client(
                ip("127.0.0.1"),
                &headers(&["203.0.113.66, 198.51.100.9", "10.1.2.3"])
            ),
            ip("198.51.100.9")
        );
        assert_eq!(
            proxies.client(ip("127.0.0.1"), &headers(&["[2001:db8::7]"])),
            ip("2001:db8::7")
        );
        // No header, or nonsense in it: the nearest hop known.
        assert_eq!(
            proxies.client(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
        assert_eq!(
            proxies.client(ip("127.0.0.1"), &headers(&["unknown, 10.9.9.9"])),
            ip("10.9.9.9")
        );
        // None trusted (the default): the connection's address.
        assert_eq!(
            TrustedProxies::default().client(ip("127.0.0.1"), &headers(&["198.51.100.9"])),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn a_proxy_must_be_an_address_or_a_block() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        let error = TrustedProxies::parse(&["proxy.example".into()]).unwrap_err();
        assert!(error.contains("web.trusted_proxies"), "{error}");
    }
}
