//! Domain posture checks against real parts: an authoritative DNS server on
//! loopback serving test zones (hickory-server, UDP and TCP) and an HTTPS
//! server with its own CA for the MTA-STS policies. Every finding the
//! checker knows is produced by some zone here.

use std::process::Command;
use std::time::Duration;

use dmarcd::dns::{DnsConfig, PostureChecker, PostureReport, RecordKind, ReportTargets, Severity};

use crate::common::policy_server::{PolicyAnswer, PolicyServer};
use crate::common::zone_server::{Fault, ZoneServer};

const OUR_ADDRESS: &str = "dmarc@reports.dmarcd.test";

/// A TXT value as zone-file text: strings of at most 255 bytes.
fn txt(value: &str) -> String {
    value
        .as_bytes()
        .chunks(255)
        .map(|chunk| format!("\"{}\"", std::str::from_utf8(chunk).unwrap()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn good_policy(mx: &[&str]) -> String {
    let mx: String = mx.iter().map(|host| format!("mx: {host}\n")).collect();
    format!("version: STSv1\nmode: enforce\n{mx}max_age: 604800\n")
}

/// The zones every test here shares.
fn zones() -> String {
    let key2048 = dmarcd::testing::rsa_spki(2048);
    let key1024 = dmarcd::testing::rsa_spki(1024);
    let key512 = dmarcd::testing::rsa_spki(512);
    let huge_spf = format!("v=spf1 {}-all", "ip4:192.0.2.1 ".repeat(60_000 / 14));
    let huge_dmarc = format!(
        "v=DMARC1; p=none; rua={}",
        "mailto:a@b.test,".repeat(60_000 / 16)
    );
    let hosts: String = (1..=9)
        .map(|n| format!("h{n}.lookups.test. A 192.0.2.{n}\n"))
        .collect();
    format!(
        r#"
good.test. TXT "v=spf1 ip4:192.0.2.0/24 include:_spf.good.test -all"
good.test. TXT "google-site-verification=abc"
_spf.good.test. TXT "v=spf1 ip6:2001:db8::/32 a:mail.good.test ~all"
mail.good.test. A 192.0.2.10
_dmarc.good.test. TXT "v=DMARC1; p=reject; rua=mailto:{OUR_ADDRESS}"
good.test._report._dmarc.reports.dmarcd.test. TXT "v=DMARC1"
s1._domainkey.good.test. TXT {dkim2048}
good.test. MX 10 mx1.good.test.
mx1.good.test. A 127.0.0.1
_mta-sts.good.test. TXT "v=STSv1; id=2024010101"
mta-sts.good.test. A 127.0.0.1
_smtp._tls.good.test. TXT "v=TLSRPTv1; rua=mailto:{OUR_ADDRESS}"
default._bimi.good.test. TXT "v=BIMI1; l=https://good.test/logo.svg"
www.sub.good.test. A 192.0.2.80

dup.test. TXT "v=spf1 -all"
dup.test. TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.dup.test. TXT "v=DMARC1; p=none"
_dmarc.dup.test. TXT "v=DMARC1; p=reject"

lookups.test. TXT "v=spf1 include:a.lookups.test include:b.lookups.test -all"
a.lookups.test. TXT "v=spf1 a:h1.lookups.test a:h2.lookups.test a:h3.lookups.test a:h4.lookups.test a:h5.lookups.test -all"
b.lookups.test. TXT "v=spf1 a:h6.lookups.test a:h7.lookups.test a:h8.lookups.test a:h9.lookups.test -all"
{hosts}
void.test. TXT "v=spf1 a:n1.void.test a:n2.void.test mx:n3.void.test +all"
loop.test. TXT "v=spf1 include:loop2.test ?all"
loop2.test. TXT "v=spf1 include:loop.test -all"

keys.test. TXT "v=spf1 -all"
s2048._domainkey.keys.test. TXT {dkim2048}
s1024._domainkey.keys.test. TXT {dkim1024}
s512._domainkey.keys.test. TXT {dkim512}
old._domainkey.keys.test. TXT "v=DKIM1; p="
trial._domainkey.keys.test. TXT {dkim_testing}

nopolicy.test. MX 10 mx.nopolicy.test.
mx.nopolicy.test. A 127.0.0.1
_mta-sts.nopolicy.test. TXT "v=STSv1; id=1"

uncovered.test. MX 10 mx1.uncovered.test.
uncovered.test. MX 20 backup.other.test.
mx1.uncovered.test. A 127.0.0.1
backup.other.test. A 127.0.0.1
_mta-sts.uncovered.test. TXT "v=STSv1; id=2"
mta-sts.uncovered.test. A 127.0.0.1

redirect.test. MX 10 mx1.good.test.
_mta-sts.redirect.test. TXT "v=STSv1; id=3"
mta-sts.redirect.test. A 127.0.0.1
wrongtype.test. MX 10 mx1.good.test.
_mta-sts.wrongtype.test. TXT "v=STSv1; id=4"
mta-sts.wrongtype.test. A 127.0.0.1
badcert.test. MX 10 mx1.good.test.
_mta-sts.badcert.test. TXT "v=STSv1; id=5"
mta-sts.badcert.test. A 127.0.0.1
bigpolicy.test. MX 10 mx1.good.test.
_mta-sts.bigpolicy.test. TXT "v=STSv1; id=6"
mta-sts.bigpolicy.test. A 127.0.0.1

unauth.test. TXT "v=spf1 -all"
_dmarc.unauth.test. TXT "v=DMARC1; p=quarantine; rua=mailto:{OUR_ADDRESS},mailto:agg@elsewhere.test"
_smtp._tls.unauth.test. TXT "v=TLSRPTv1; rua=mailto:tls@elsewhere.test"
elsewhere.test._report._dmarc.reports.dmarcd.test. TXT "v=DMARC1"
other.test. TXT "v=spf1 -all"
_dmarc.other.test. TXT "v=DMARC1; p=none; rua=mailto:agg@elsewhere.test"

huge.test. TXT {huge_spf}
_dmarc.huge.test. TXT {huge_dmarc}

_dmarc.cname.test. CNAME c1.cname.test.
c1.cname.test. CNAME c2.cname.test.
c2.cname.test. CNAME c3.cname.test.
c3.cname.test. TXT "v=DMARC1; p=reject"
_dmarc.cnameloop.test. CNAME x.cnameloop.test.
x.cnameloop.test. CNAME _dmarc.cnameloop.test.

broken.test. TXT "v=spf1 ip4:300.1.1.1 -all"
_dmarc.broken.test. TXT "v=DMARC1; p=block; pct=200"
_smtp._tls.broken.test. TXT "v=TLSRPTv1; rua=ftp://x.test"
default._bimi.broken.test. TXT "v=BIMI1; l=http://broken.test/logo.svg"
"#,
        dkim2048 = txt(&format!("v=DKIM1; k=rsa; p={key2048}")),
        dkim1024 = txt(&format!("v=DKIM1; k=rsa; p={key1024}")),
        dkim512 = txt(&format!("v=DKIM1; k=rsa; p={key512}")),
        dkim_testing = txt(&format!("v=DKIM1; t=y; p={key2048}")),
        huge_spf = txt(&huge_spf),
        huge_dmarc = txt(&huge_dmarc),
    )
}

struct Setup {
    dns: ZoneServer,
    _https: PolicyServer,
    checker: PostureChecker,
}

async fn setup() -> Setup {
    let dns = ZoneServer::start(
        &zones(),
        &[
            ("_dmarc.servfail.test", Fault::ServFail),
            ("servfail.test", Fault::Silent),
        ],
    )
    .await;
    let https = PolicyServer::start(vec![
        (
            "mta-sts.good.test".into(),
            PolicyAnswer::Policy(good_policy(&["mx1.good.test"])),
        ),
        (
            "mta-sts.uncovered.test".into(),
            PolicyAnswer::Policy(good_policy(&["mx1.uncovered.test", "*.mx.uncovered.test"])),
        ),
        (
            "mta-sts.redirect.test".into(),
            PolicyAnswer::Redirect("https://mta-sts.good.test/.well-known/mta-sts.txt".into()),
        ),
        (
            "mta-sts.wrongtype.test".into(),
            PolicyAnswer::Typed("text/html", good_policy(&["mx1.good.test"])),
        ),
        (
            "mta-sts.badcert.test".into(),
            PolicyAnswer::WrongCertificate,
        ),
        (
            "mta-sts.bigpolicy.test".into(),
            PolicyAnswer::Policy(format!(
                "{}{}",
                good_policy(&["mx1.good.test"]),
                "#".repeat(70_000)
            )),
        ),
    ])
    .await;
    let config = DnsConfig {
        name_servers: vec![dns.address().to_string()],
        timeout_ms: 400,
        attempts: 1,
        mta_sts_https_port: https.port(),
        mta_sts_ca_file: Some(https.ca_file()),
        ..DnsConfig::default()
    };
    let targets = ReportTargets::new(
        &[OUR_ADDRESS.to_string()],
        &["reports.dmarcd.test".to_string()],
        "/tlsrpt",
    );
    let checker = PostureChecker::new(&config, targets).unwrap();
    Setup {
        dns,
        _https: https,
        checker,
    }
}

fn codes(report: &PostureReport, kind: RecordKind) -> Vec<String> {
    report
        .findings
        .iter()
        .filter(|finding| finding.kind == kind)
        .map(|finding| finding.code.clone())
        .collect()
}

fn finding<'a>(report: &'a PostureReport, code: &str) -> &'a dmarcd::dns::Finding {
    report
        .findings
        .iter()
        .find(|finding| finding.code == code)
        .unwrap_or_else(|| panic!("no {code} in {:#?}", report.findings))
}

#[tokio::test]
async fn a_well_kept_domain_grades_ok_everywhere() {
    let setup = setup().await;
    let report = setup.checker.check("good.test", &["s1".to_string()]).await;
    for kind in RecordKind::ALL {
        assert_eq!(
            report.grade(kind),
            Severity::Ok,
            "{kind:?}: {:#?}",
            report.findings
        );
    }
    for code in [
        "dmarc.rua_here",
        "dmarc.policy",
        "spf.all",
        "spf.lookups",
        "dkim.key",
        "mx.hosts",
        "mta_sts.enforce",
        "tls_rpt.here",
        "bimi.logo",
    ] {
        finding(&report, code);
    }
    // reports.dmarcd.test is outside good.test, and it authorized the reports.
    finding(&report, "dmarc.rua_authorized");
    let tree = report.spf.as_ref().unwrap();
    assert_eq!(tree.lookups, 2, "include + a");
    assert_eq!(
        tree.authorized_networks,
        ["192.0.2.0/24", "192.0.2.10/32", "2001:db8::/32"]
    );
    let child = tree.root.terms[1].child.as_ref().unwrap();
    assert_eq!(child.domain, "_spf.good.test");
    // What was seen is kept: the SPF TXT only (not the site verification),
    // the MX, the MTA-STS policy text.
    let spf = report
        .observations
        .iter()
        .find(|o| o.kind == RecordKind::Spf)
        .unwrap();
    assert_eq!(
        spf.values,
        ["v=spf1 ip4:192.0.2.0/24 include:_spf.good.test -all"]
    );
    assert!(report
        .observations
        .iter()
        .any(|o| o.record_type == "policy" && o.values[0].contains("mode: enforce")));
}

#[tokio::test]
async fn a_domain_without_records_gets_the_records_to_publish() {
    let setup = setup().await;
    let report = setup.checker.check("missing.test", &[]).await;
    let dmarc = finding(&report, "dmarc.missing");
    assert_eq!(dmarc.severity, Severity::Error);
    assert_eq!(
        dmarc.fix.as_ref().unwrap().to_string(),
        format!("_dmarc.missing.test. IN TXT \"v=DMARC1; p=none; rua=mailto:{OUR_ADDRESS}\"")
    );
    assert_eq!(finding(&report, "spf.missing").severity, Severity::Error);
    assert_eq!(finding(&report, "mx.missing").severity, Severity::Warning);
    assert_eq!(
        finding(&report, "mta_sts.missing").severity,
        Severity::Warning
    );
    let tlsrpt = finding(&report, "tls_rpt.missing");
    assert_eq!(
        tlsrpt.fix.as_ref().unwrap().value,
        format!("v=TLSRPTv1; rua=mailto:{OUR_ADDRESS}")
    );
    assert_eq!(
        finding(&report, "dkim.no_selectors").severity,
        Severity::Unknown
    );
    assert_eq!(report.grade(RecordKind::Bimi), Severity::Ok);
}

#[tokio::test]
async fn duplicates_inheritance_and_cname_chains() {
    let setup = setup().await;
    let dup = setup.checker.check("dup.test", &[]).await;
    assert_eq!(finding(&dup, "dmarc.multiple").severity, Severity::Error);
    assert_eq!(finding(&dup, "spf.multiple").severity, Severity::Error);

    // No record of its own: the organizational domain's applies.
    let sub = setup.checker.check("www.sub.good.test", &[]).await;
    assert!(finding(&sub, "dmarc.inherited")
        .message
        .contains("good.test"));
    assert!(codes(&sub, RecordKind::Dmarc).contains(&"dmarc.rua_here".to_string()));

    let chained = setup.checker.check("cname.test", &[]).await;
    assert!(codes(&chained, RecordKind::Dmarc).contains(&"dmarc.found".to_string()));
    // A CNAME loop is no record (or a failed lookup), never a crash.
    let looped = setup.checker.check("cnameloop.test", &[]).await;
    let dmarc = codes(&looped, RecordKind::Dmarc);
    assert!(
        dmarc.contains(&"dmarc.missing".to_string())
            || dmarc.contains(&"dmarc.could_not_check".to_string()),
        "{dmarc:?}"
    );
}

#[tokio::test]
async fn spf_limits_loops_and_risky_terms() {
    let setup = setup().await;
    let lookups = setup.checker.check("lookups.test", &[]).await;
    let too_many = finding(&lookups, "spf.too_many_lookups");
    assert!(
        too_many.message.contains("takes 11 DNS lookups"),
        "{}",
        too_many.message
    );
    assert_eq!(lookups.spf.as_ref().unwrap().lookups, 11);

    let void = setup.checker.check("void.test", &[]).await;
    assert_eq!(void.spf.as_ref().unwrap().void_lookups, 3);
    finding(&void, "spf.void_lookups");
    let pass_all = finding(&void, "spf.pass_all");
    assert_eq!(
        pass_all.fix.as_ref().unwrap().value,
        "v=spf1 a:n1.void.test a:n2.void.test mx:n3.void.test ~all"
    );

    let looped = setup.checker.check("loop.test", &[]).await;
    assert!(finding(&looped, "spf.include_loop")
        .message
        .contains("loop.test > loop2.test"));
    finding(&looped, "spf.neutral_all");

    let broken = setup.checker.check("broken.test", &[]).await;
    assert!(finding(&broken, "spf.syntax")
        .message
        .contains("ip4:300.1.1.1"));
    assert!(codes(&broken, RecordKind::Dmarc).contains(&"dmarc.syntax".to_string()));
    finding(&broken, "tls_rpt.syntax");
    finding(&broken, "bimi.logo_not_https");
}

#[tokio::test]
async fn dkim_keys_are_judged_by_size_and_flags() {
    let setup = setup().await;
    let selectors: Vec<String> = ["s2048", "s1024", "s512", "old", "trial", "nosuch"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let report = setup.checker.check("keys.test", &selectors).await;
    let dkim = codes(&report, RecordKind::Dkim);
    for code in [
        "dkim.rsa_too_short",
        "dkim.rsa_short",
        "dkim.key",
        "dkim.revoked",
        "dkim.testing",
        "dkim.missing",
    ] {
        assert!(dkim.contains(&code.to_string()), "{code} in {dkim:?}");
    }
    assert!(finding(&report, "dkim.rsa_too_short")
        .message
        .contains("512-bit"));
    assert!(finding(&report, "dkim.missing").message.contains("nosuch"));
    assert_eq!(report.grade(RecordKind::Dkim), Severity::Error);
}

#[tokio::test]
async fn mta_sts_policies_are_fetched_strictly() {
    let setup = setup().await;
    let no_policy = setup.checker.check("nopolicy.test", &[]).await;
    assert!(finding(&no_policy, "mta_sts.policy_unavailable")
        .message
        .contains("mta-sts.nopolicy.test has no address"));

    let uncovered = setup.checker.check("uncovered.test", &[]).await;
    let not_covered = finding(&uncovered, "mta_sts.mx_not_covered");
    assert!(not_covered.message.contains("backup.other.test"));
    assert_eq!(
        codes(&uncovered, RecordKind::MtaSts).len(),
        2,
        "enforce + not covered"
    );

    for (domain, expected) in [
        ("redirect.test", "a redirect"),
        ("wrongtype.test", "text/html"),
        ("badcert.test", "TLS handshake failed"),
        ("bigpolicy.test", "larger than 65536 bytes"),
    ] {
        let report = setup.checker.check(domain, &[]).await;
        let unavailable = finding(&report, "mta_sts.policy_unavailable");
        assert!(
            unavailable.message.contains(expected),
            "{domain}: {}",
            unavailable.message
        );
    }
}

#[tokio::test]
async fn report_addresses_need_authorization_from_outside_hosts() {
    let setup = setup().await;
    let report = setup.checker.check("unauth.test", &[]).await;
    let ours = report
        .findings
        .iter()
        .find(|f| f.code == "dmarc.rua_unauthorized" && f.message.contains("this dmarcd"))
        .unwrap_or_else(|| panic!("{:#?}", report.findings));
    assert_eq!(
        ours.fix.as_ref().unwrap().to_string(),
        "unauth.test._report._dmarc.reports.dmarcd.test. IN TXT \"v=DMARC1\""
    );
    let theirs = report
        .findings
        .iter()
        .find(|f| f.code == "dmarc.rua_unauthorized" && f.message.contains("elsewhere.test"))
        .unwrap();
    assert!(theirs.message.contains("operator of elsewhere.test"));
    finding(&report, "dmarc.rua_here");
    let tlsrpt = finding(&report, "tls_rpt.elsewhere");
    assert_eq!(
        tlsrpt.fix.as_ref().unwrap().value,
        format!("v=TLSRPTv1; rua=mailto:tls@elsewhere.test,mailto:{OUR_ADDRESS}")
    );

    // Reports that go elsewhere only: the record with this dmarcd added.
    let other = setup.checker.check("other.test", &[]).await;
    let elsewhere = finding(&other, "dmarc.rua_elsewhere");
    assert_eq!(
        elsewhere.fix.as_ref().unwrap().value,
        format!("v=DMARC1; p=none; rua=mailto:agg@elsewhere.test,mailto:{OUR_ADDRESS}")
    );
}

#[tokio::test]
async fn oversized_records_and_failing_servers_never_crash_a_check() {
    let setup = setup().await;
    // 60 KB TXT records come over TCP (too large for UDP) and are refused
    // by size, not parsed.
    let huge = setup.checker.check("huge.test", &[]).await;
    assert!(finding(&huge, "spf.too_long").message.contains("bytes"));
    finding(&huge, "dmarc.too_long");

    let before = setup.dns.queries();
    let started = std::time::Instant::now();
    let failing = setup.checker.check("servfail.test", &[]).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let dmarc = finding(&failing, "dmarc.could_not_check");
    assert_eq!(dmarc.severity, Severity::Unknown);
    assert!(dmarc.message.contains("next check"));
    assert_eq!(
        finding(&failing, "spf.could_not_check").severity,
        Severity::Unknown
    );
    assert_eq!(failing.grade(RecordKind::Dmarc), Severity::Unknown);
    // Failed questions leave no observation (no false "record removed").
    assert!(!failing
        .observations
        .iter()
        .any(|o| o.name == "_dmarc.servfail.test" || o.name == "servfail.test"));
    // A failure is not cached: the next check asks the server again.
    let asked = setup.dns.queries();
    assert!(asked > before);
    setup.checker.check("servfail.test", &[]).await;
    assert!(setup.dns.queries() >= asked + 2);
}

#[tokio::test]
async fn the_check_command_prints_findings_and_fixes() {
    let setup = setup().await;
    let dns_address = setup.dns.address().to_string();
    let https_port = setup._https.port().to_string();
    let ca_file = setup._https.ca_file();
    let run = move |json: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dmarcd"));
        command
            .arg("check")
            .arg("good.test")
            .arg("missing.test")
            .args(["--selector", "s1"])
            .env("DMARCD_DNS_NAME_SERVERS", &dns_address)
            .env("DMARCD_DNS_TIMEOUT_MS", "400")
            .env("DMARCD_DNS_MTA_STS_HTTPS_PORT", &https_port)
            .env("DMARCD_DNS_MTA_STS_CA_FILE", &ca_file)
            .env("DMARCD_SMTP_RECIPIENTS", OUR_ADDRESS)
            .env("DMARCD_LOG", "error")
            .env_remove("DATABASE_URL");
        if json {
            command.arg("--json");
        }
        command
    };
    let output = tokio::task::spawn_blocking(move || (run(false).output(), run(true).output()))
        .await
        .unwrap();
    let text = output.0.unwrap();
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.status.code(), Some(1), "errors found: {stdout}");
    assert!(stdout.contains("good.test (checked"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "publish: _dmarc.missing.test. IN TXT \"v=DMARC1; p=none; rua=mailto:{OUR_ADDRESS}\""
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("SPF tree (2 DNS lookups, 0 void)"),
        "{stdout}"
    );
    let json = output.1.unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["domain"], "good.test");
    assert_eq!(lines[1]["grades"][0]["severity"], "error");
}
