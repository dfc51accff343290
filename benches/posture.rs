//! How long a posture check of 100 domains takes against an authoritative
//! DNS server on loopback (and an HTTPS server for their MTA-STS
//! policies): each domain has DMARC with an outside report address,
//! SPF with two includes, two DKIM selectors, two MX hosts, MTA-STS,
//! TLS-RPT and BIMI. A fresh checker (empty cache) per run.
//!
//!   cargo bench --bench posture

#[path = "../tests/all/common/policy_server.rs"]
mod policy_server;
#[path = "../tests/all/common/zone_server.rs"]
mod zone_server;

use std::time::Instant;

use dmarcd::dns::{DnsConfig, PostureChecker, ReportTargets};
use futures_util::StreamExt;

use policy_server::{PolicyAnswer, PolicyServer};
use zone_server::ZoneServer;

const DOMAINS: usize = 100;

fn zone() -> String {
    let key = dmarcd::testing::rsa_spki(2048);
    let key: Vec<String> = format!("v=DKIM1; k=rsa; p={key}")
        .as_bytes()
        .chunks(255)
        .map(|chunk| format!("\"{}\"", std::str::from_utf8(chunk).unwrap()))
        .collect();
    let key = key.join(" ");
    let mut zone = String::from(
        "_spf.esp.test. TXT \"v=spf1 ip4:198.51.100.0/24 include:_spf2.esp.test ~all\"\n\
         _spf2.esp.test. TXT \"v=spf1 ip6:2001:db8::/32 ~all\"\n",
    );
    for n in 0..DOMAINS {
        let d = format!("d{n}.test");
        zone.push_str(&format!(
            "{d}. TXT \"v=spf1 a mx include:_spf.esp.test -all\"\n\
             {d}. A 192.0.2.{host}\n\
             {d}. MX 10 mx1.{d}.\n\
             {d}. MX 20 mx2.{d}.\n\
             mx1.{d}. A 127.0.0.1\n\
             mx2.{d}. A 127.0.0.2\n\
             _dmarc.{d}. TXT \"v=DMARC1; p=reject; rua=mailto:dmarc@reports.dmarcd.test\"\n\
             {d}._report._dmarc.reports.dmarcd.test. TXT \"v=DMARC1\"\n\
             s1._domainkey.{d}. TXT {key}\n\
             s2._domainkey.{d}. TXT {key}\n\
             _mta-sts.{d}. TXT \"v=STSv1; id=1\"\n\
             mta-sts.{d}. A 127.0.0.1\n\
             _smtp._tls.{d}. TXT \"v=TLSRPTv1; rua=mailto:dmarc@reports.dmarcd.test\"\n\
             default._bimi.{d}. TXT \"v=BIMI1; l=https://{d}/logo.svg\"\n",
            host = n % 250 + 1
        ));
    }
    zone
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dns = ZoneServer::start(&zone(), &[]).await;
        let policies = (0..DOMAINS)
            .map(|n| {
                (
                    format!("mta-sts.d{n}.test"),
                    PolicyAnswer::Policy(format!(
                        "version: STSv1\nmode: enforce\nmx: mx1.d{n}.test\nmx: mx2.d{n}.test\nmax_age: 604800\n"
                    )),
                )
            })
            .collect();
        let https = PolicyServer::start(policies).await;
        let selectors = vec!["s1".to_string(), "s2".to_string()];
        for concurrency in [4, 16] {
            for run in 1..=3 {
                let config = DnsConfig {
                    name_servers: vec![dns.address().to_string()],
                    mta_sts_https_port: https.port(),
                    mta_sts_ca_file: Some(https.ca_file()),
                    concurrency,
                    ..DnsConfig::default()
                };
                let targets = ReportTargets::new(
                    &["dmarc@reports.dmarcd.test".to_string()],
                    &[],
                    "/tlsrpt",
                );
                let checker = PostureChecker::new(&config, targets).unwrap();
                let checker = &checker;
                let selectors = &selectors;
                let before = dns.queries();
                let started = Instant::now();
                let reports: Vec<_> = futures_util::stream::iter(0..DOMAINS)
                    .map(|n| async move { checker.check(&format!("d{n}.test"), selectors).await })
                    .buffer_unordered(concurrency)
                    .collect()
                    .await;
                let elapsed = started.elapsed();
                let errors = reports
                    .iter()
                    .flat_map(|r| &r.findings)
                    .filter(|f| f.severity != dmarcd::dns::Severity::Ok)
                    .count();
                println!(
                    "posture: {DOMAINS} domains, concurrency {concurrency}, run {run}: {:.0} ms ({:.1} ms/domain), {} DNS queries, {errors} findings not ok",
                    elapsed.as_secs_f64() * 1000.0,
                    elapsed.as_secs_f64() * 1000.0 / DOMAINS as f64,
                    dns.queries() - before,
                );
            }
        }
    });
}
