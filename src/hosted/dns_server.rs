//! The authoritative DNS listener for the hosted zone (`[dns_server]`),
//! UDP and TCP, on hickory-server. It answers only names inside the zone
//! (anything else is REFUSED: it is no resolver) and reads every answer
//! from the database, so a policy change made on any node is in the next
//! answer. Answers that do not fit a UDP reply are truncated by
//! hickory's encoder (TC set), and resolvers ask again over TCP.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;

use super::config::DnsServerConfig;
use super::policy::sts_record;
use super::records::{self, HostedName};
use crate::store::{hosted, posture, Store, StoreResult};

/// A TCP connection may stay idle this long between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries answered at once over one TCP connection.
const TCP_BUFFER: usize = 64;

/// What the hosted zone answers and how.
pub struct HostedZone {
    store: Store,
    zone_text: String,
    ttl: u32,
    soa: Record,
    nameservers: Vec<Record>,
    /// The TLS-RPT record every hosted domain gets (none: this dmarcd
    /// knows no address of its own, and the name does not exist).
    tlsrpt: Option<String>,
}

impl HostedZone {
    /// From `[dns_server]` (its zone set), with the TLS-RPT record to serve.
    pub fn new(
        store: Store,
        config: &DnsServerConfig,
        tlsrpt: Option<String>,
    ) -> Result<HostedZone, String> {
        let zone_text = records::canonical(config.zone.as_deref().unwrap_or_default());
        let name = |text: &str| {
            Name::from_str(&format!("{}.", records::canonical(text)))
                .map_err(|error| format!("dns_server: {text:?} is not a DNS name: {error}"))
        };
        let zone = name(&zone_text)?;
        let primary = match config.nameservers.first() {
            Some(first) => name(first)?,
            None => zone.clone(),
        };
        let hostmaster = match &config.hostmaster {
            Some(contact) => name(&contact.replace('@', "."))?,
            None => name(&format!("hostmaster.{zone_text}"))?,
        };
        // The serial only has to grow when the zone's data does for
        // secondaries, which a delegated zone answered live has none of.
        let soa = Record::from_rdata(
            zone.clone(),
            config.ttl,
            RData::SOA(SOA::new(
                primary, hostmaster, 1, 3600, 600, 86_400, config.ttl,
            )),
        );
        let nameservers = config
            .nameservers
            .iter()
            .map(|ns| {
                Ok(Record::from_rdata(
                    zone.clone(),
                    config.ttl,
                    RData::NS(NS(name(ns)?)),
                ))
            })
            .collect::<Result<_, String>>()?;
        Ok(HostedZone {
            store,
            zone_text,
            ttl: config.ttl,
            soa,
            nameservers,
            tlsrpt,
        })
    }

    /// The TXT text a hosted name holds, `None` if the name does not exist.
    pub async fn txt_of(&self, name: &HostedName) -> StoreResult<Option<String>> {
        let db = self.store.db();
        Ok(match name {
            HostedName::MtaSts(domain) => hosted::policy(db, domain)
                .await?
                .map(|stored| sts_record(&stored.policy_id)),
            HostedName::TlsRpt(domain) => match &self.tlsrpt {
                Some(record) if posture::is_monitored(db, domain).await? => Some(record.clone()),
                _ => None,
            },
            HostedName::Dmarc(domain) => hosted::dmarc_record(db, domain)
                .await?
                .map(|stored| stored.record),
            HostedName::Apex | HostedName::Unknown => None,
        })
    }

    fn txt_record(&self, name: &Name, text: &str) -> Record {
        // A character-string holds at most 255 bytes (RFC 1035 section
        // 3.3); longer text is split, and readers join the parts.
        let parts = text
            .as_bytes()
            .chunks(255)
            .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
            .collect();
        Record::from_rdata(name.clone(), self.ttl, RData::TXT(TXT::new(parts)))
    }

    async fn answer<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> Result<ResponseInfo, ResponseCode> {
        if request.metadata.op_code != OpCode::Query {
            return Err(ResponseCode::NotImp);
        }
        let info = request.request_info().map_err(|_| ResponseCode::FormErr)?;
        let asked = Name::from(info.query.name());
        let kind = info.query.query_type();
        let Some(hosted) = records::classify(&self.zone_text, &asked.to_ascii()) else {
            count("refused");
            return Err(ResponseCode::Refused);
        };
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        metadata.recursion_available = false;
        let mut answers = Vec::new();
        let mut exists = true;
        match &hosted {
            HostedName::Apex => match kind {
                RecordType::SOA => answers.push(self.soa.clone()),
                RecordType::NS => answers.extend(self.nameservers.iter().cloned()),
                // RFC 8482: a small answer to ANY rather than everything.
                RecordType::ANY => answers.push(self.soa.clone()),
                _ => {}
            },
            _ => match self.txt_of(&hosted).await {
                Ok(Some(text)) => {
                    if matches!(kind, RecordType::TXT | RecordType::ANY) {
                        answers.push(self.txt_record(&asked, &text));
                    }
                }
                Ok(None) => exists = false,
                Err(error) => {
                    tracing::warn!(%error, name = %asked, "dns_server: cannot read the hosted record");
                    return Err(ResponseCode::ServFail);
                }
            },
        }
        if !exists {
            metadata.response_code = ResponseCode::NXDomain;
        }
        // A negative or empty answer carries the SOA, whose minimum TTL
        // says how long resolvers may remember it (RFC 2308).
        let soa: Vec<&Record> = if answers.is_empty() {
            vec![&self.soa]
        } else {
            Vec::new()
        };
        let mut builder = MessageResponseBuilder::new(&request.queries, None);
        if let Some(edns) = &request.edns {
            builder.edns(edns);
        }
        let response = builder.build(metadata, answers.iter(), [], soa, []);
        count(if exists { "answered" } else { "nxdomain" });
        response_handle
            .send_response(response)
            .await
            .map_err(|_| ResponseCode::ServFail)
    }
}

#[async_trait::async_trait]
impl RequestHandler for HostedZone {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        match self.answer(request, response_handle.clone()).await {
            Ok(info) => info,
            Err(code) => {
                if code == ResponseCode::ServFail {
                    count("servfail");
                }
                let response = MessageResponseBuilder::new(&request.queries, None)
                    .error_msg(&request.metadata, code);
                let mut handle = response_handle;
                handle
                    .send_response(response)
                    .await
                    .unwrap_or_else(|_| refused_info(request, code))
            }
        }
    }
}

fn count(answer: &str) {
    crate::metrics::count("dmarcd_hosted_dns_queries_total", &[("answer", answer)], 1);
}

fn refused_info(request: &Request, code: ResponseCode) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = code;
    ResponseInfo::from(hickory_proto::op::Header {
        metadata,
        counts: Default::default(),
    })
}

/// The running listener.
pub struct DnsListener {
    pub address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DnsListener {
    /// Binds UDP and TCP on `address` (same port) and answers for `zone`
    /// until dropped or the process ends.
    pub async fn start(address: &str, zone: HostedZone) -> std::io::Result<DnsListener> {
        let udp = tokio::net::UdpSocket::bind(address).await?;
        let bound = udp.local_addr()?;
        // Port 0: TCP takes the port UDP got.
        let tcp = tokio::net::TcpListener::bind(bound).await?;
        let mut server = Server::new(zone);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE, TCP_BUFFER);
        tracing::info!(%bound, "hosted zone: answering DNS over UDP and TCP");
        let task = tokio::spawn(async move {
            if let Err(error) = server.block_until_done().await {
                tracing::error!(%error, "hosted zone: the DNS listener stopped");
            }
        });
        Ok(DnsListener {
            address: bound,
            task,
        })
    }
}

impl Drop for DnsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}
