//! A DNS server on a loopback UDP port that answers PTR queries from rules:
//! a name, "no such name", SERVFAIL, a slow answer, or silence. Tests and
//! benchmarks point `enrich.name_servers` at it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

/// How the server answers for one IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtrRule {
    /// A PTR record with this name and a one-hour TTL.
    Name(String),
    /// NXDOMAIN.
    NoName,
    /// SERVFAIL.
    ServFail,
    /// The name, after this delay.
    Slow(Duration, String),
    /// No answer at all.
    Silent,
}

type Fallback = Arc<dyn Fn(IpAddr) -> PtrRule + Send + Sync>;

pub struct PtrServer {
    address: SocketAddr,
    queries: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PtrServer {
    /// Starts answering on 127.0.0.1 with `rules`, and `fallback` for IPs
    /// not in them.
    pub async fn start(
        rules: HashMap<IpAddr, PtrRule>,
        fallback: impl Fn(IpAddr) -> PtrRule + Send + Sync + 'static,
    ) -> std::io::Result<PtrServer> {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let address = socket.local_addr()?;
        let queries = Arc::new(AtomicU64::new(0));
        let rules = Arc::new(rules);
        let fallback: Fallback = Arc::new(fallback);
        let counter = Arc::clone(&queries);
        let task = tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            loop {
                let Ok((length, peer)) = socket.recv_from(&mut buffer).await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let Ok(query) = Message::from_vec(&buffer[..length]) else {
                    continue;
                };
                let socket = Arc::clone(&socket);
                let rules = Arc::clone(&rules);
                let fallback = Arc::clone(&fallback);
                tokio::spawn(async move {
                    if let Some(reply) = answer(&query, &rules, &fallback).await {
                        let _ = socket.send_to(&reply, peer).await;
                    }
                });
            }
        });
        Ok(PtrServer {
            address,
            queries,
            task,
        })
    }

    /// `127.0.0.1:port`, for `enrich.name_servers`.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Queries received so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for PtrServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    query: &Message,
    rules: &HashMap<IpAddr, PtrRule>,
    fallback: &Fallback,
) -> Option<Vec<u8>> {
    let id = query.metadata.id;
    let question = query.queries.first()?;
    let ip = match question.name().parse_arpa_name() {
        Ok(net) if question.query_type() == RecordType::PTR => net.addr(),
        _ => {
            return Message::error_msg(id, OpCode::Query, ResponseCode::Refused)
                .to_vec()
                .ok()
        }
    };
    let rule = rules.get(&ip).cloned().unwrap_or_else(|| fallback(ip));
    let mut reply = Message::response(id, OpCode::Query);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(question.clone());
    let name = match rule {
        PtrRule::Silent => return None,
        PtrRule::ServFail => {
            reply.metadata.response_code = ResponseCode::ServFail;
            return reply.to_vec().ok();
        }
        PtrRule::NoName => {
            reply.metadata.response_code = ResponseCode::NXDomain;
            return reply.to_vec().ok();
        }
        PtrRule::Slow(delay, name) => {
            tokio::time::sleep(delay).await;
            name
        }
        PtrRule::Name(name) => name,
    };
    let target = Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).ok()?;
    reply.add_answer(Record::from_rdata(
        question.name().clone(),
        3600,
        RData::PTR(PTR(target)),
    ));
    reply.to_vec().ok()
}
