//! `dmarcd check DOMAIN...`: the posture findings of each domain, as text
//! for people or JSON for scripts.

use std::fmt::Write as _;
use std::process::ExitCode;

use futures_util::StreamExt;

use crate::config::Config;
use crate::dns::spf_tree::SpfNode;
use crate::dns::{PostureChecker, PostureReport, RecordKind, Severity};

pub async fn check(
    config: &Config,
    domains: &[String],
    selectors: &[String],
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut names = Vec::new();
    for domain in domains {
        let name = domain.trim().trim_end_matches('.').to_lowercase();
        if !crate::domain::is_domain_name(&name) {
            anyhow::bail!("{domain:?} is not a domain name");
        }
        names.push(name);
    }
    let checker = PostureChecker::from_config(config).map_err(anyhow::Error::msg)?;
    let checker = &checker;
    let reports: Vec<PostureReport> = futures_util::stream::iter(names)
        .map(|name| async move { checker.check(&name, selectors).await })
        .buffered(config.dns.concurrency)
        .collect()
        .await;
    for report in &reports {
        if json {
            println!("{}", serde_json::to_string(report)?);
        } else {
            print!("{}", render_text(report));
        }
    }
    let any_error = reports
        .iter()
        .flat_map(|report| &report.findings)
        .any(|finding| finding.severity == Severity::Error);
    Ok(if any_error {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A report as people read it: grades, then findings with their fixes,
/// then the SPF tree.
pub fn render_text(report: &PostureReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} (checked {})",
        report.domain,
        report.checked_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    for kind in RecordKind::ALL {
        let _ = writeln!(out, "  {:<8} {}", kind.label(), report.grade(kind).key());
        for finding in report.findings.iter().filter(|f| f.kind == kind) {
            let _ = writeln!(
                out,
                "    {:<7} {} [{}]",
                finding.severity.key(),
                finding.message,
                finding.code
            );
            if let Some(fix) = &finding.fix {
                let _ = writeln!(out, "            publish: {fix}");
            }
        }
    }
    if let Some(tree) = &report.spf {
        let _ = writeln!(
            out,
            "  SPF tree ({} DNS lookups, {} void):",
            tree.lookups, tree.void_lookups
        );
        render_node(&mut out, &tree.root, 2);
    }
    out.push('\n');
    out
}

fn render_node(out: &mut String, node: &SpfNode, depth: usize) {
    let indent = "  ".repeat(depth);
    let _ = writeln!(
        out,
        "{indent}{}: {}",
        node.domain,
        node.record.as_deref().unwrap_or("(no record)")
    );
    if let Some(problem) = &node.problem {
        let _ = writeln!(out, "{indent}  ! {problem}");
    }
    for term in &node.terms {
        let mut line = format!("{indent}  {}", term.term);
        if !term.networks.is_empty() {
            let _ = write!(line, " -> {}", term.networks.join(", "));
        }
        if let Some(note) = &term.note {
            let _ = write!(line, " ({note})");
        }
        let _ = writeln!(out, "{line}");
        if let Some(child) = &term.child {
            render_node(out, child, depth + 2);
        }
    }
}
