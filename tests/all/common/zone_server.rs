//! A real authoritative DNS server on loopback (hickory-server in-process,
//! UDP and TCP) answering from a zone file the test writes, with names
//! that answer SERVFAIL or nothing at all. `dns.name_servers` points at it.
//! Also included by benches/posture.rs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_proto::rr::{LowerName, Name};
use hickory_proto::serialize::txt::Parser;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, MessageResponseBuilder, ZoneType};
use hickory_server::Server;

/// A name that does not answer normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    ServFail,
    /// No answer at all: the resolver times out.
    Silent,
}

pub struct ZoneServer {
    address: SocketAddr,
    queries: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl ZoneServer {
    /// Serves `zone` (zone-file text; `@` is the root, so it may hold
    /// any names) on 127.0.0.1, with `faults` for some names (no
    /// trailing dot, any case).
    pub async fn start(zone: &str, faults: &[(&str, Fault)]) -> ZoneServer {
        let text = format!(
            "$ORIGIN .\n$TTL 60\n. IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60\n{zone}"
        );
        let (origin, records) = Parser::new(text, None, Some(Name::root()))
            .parse()
            .unwrap_or_else(|error| panic!("the test zone does not parse: {error}"));
        let handler =
            InMemoryZoneHandler::<hickory_server::net::runtime::TokioRuntimeProvider>::new(
                origin.clone(),
                records,
                ZoneType::Primary,
                AxfrPolicy::Deny,
            )
            .expect("a zone");
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::from(&origin), vec![Arc::new(handler)]);
        let queries = Arc::new(AtomicU64::new(0));
        let faults = faults
            .iter()
            .map(|(name, fault)| (name.trim_end_matches('.').to_ascii_lowercase(), *fault))
            .collect();
        let (udp, tcp) = bind_udp_and_tcp().await;
        let address = udp.local_addr().unwrap();
        let mut server = Server::new(FaultyCatalog {
            catalog,
            faults,
            queries: Arc::clone(&queries),
        });
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 65_536);
        let task = tokio::spawn(async move {
            let _ = server.block_until_done().await;
        });
        ZoneServer {
            address,
            queries,
            task,
        }
    }

    /// For `dns.name_servers`.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Questions received so far (UDP and TCP).
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for ZoneServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A UDP socket and a TCP listener on the same loopback port (resolvers
/// retry truncated answers over TCP on the port they asked over UDP). The
/// port UDP got may be taken for TCP by another test: try another.
async fn bind_udp_and_tcp() -> (tokio::net::UdpSocket, tokio::net::TcpListener) {
    for _ in 0..50 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if let Ok(tcp) = tokio::net::TcpListener::bind(udp.local_addr().unwrap()).await {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

struct FaultyCatalog {
    catalog: Catalog,
    faults: HashMap<String, Fault>,
    queries: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl RequestHandler for FaultyCatalog {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let fault = request.request_info().ok().and_then(|info| {
            let name = info.query.name().to_string();
            self.faults
                .get(name.trim_end_matches('.').to_ascii_lowercase().as_str())
                .copied()
        });
        match fault {
            None => {
                self.catalog
                    .handle_request::<R, T>(request, response_handle)
                    .await
            }
            Some(Fault::ServFail) => {
                let response = MessageResponseBuilder::new(&request.queries, None)
                    .error_msg(&request.metadata, ResponseCode::ServFail);
                match response_handle.send_response(response).await {
                    Ok(info) => info,
                    Err(_) => silent(request),
                }
            }
            Some(Fault::Silent) => silent(request),
        }
    }
}

fn silent(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}
