//! Streaming, tolerant reader of aggregate report XML.
//!
//! Real reports are often not well-formed (see the corpus README): an
//! unclosed `<xs:schema>` before the root (IKEA), an unescaped `<` inside a
//! value, stray text between elements, bytes that are not UTF-8. The parser
//! therefore keeps its own element stack, matches end tags by local name and
//! closes whatever was left open under them, and reads a "tag" that appears
//! inside a text value as text. What it had to tolerate is listed in the
//! report's `warnings`.
//!
//! What it never tolerates: a DOCTYPE (no DTD, no entity expansion, so no
//! billion-laughs), nesting past `MAX_DEPTH`, a document that ends before
//! `</feedback>` (a truncated report stored now would make the complete one
//! look like a duplicate later).

use std::borrow::Cow;
use std::io::Read;
use std::net::IpAddr;
use std::sync::Arc;

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::Reader;

use super::tags::Tag;
use super::*;

/// Deeper than any real report (which nests 5 levels); deep enough to never
/// refuse a legitimate extension.
const MAX_DEPTH: usize = 64;
/// Bytes of raw XML kept per extension element.
const MAX_EXTENSION_BYTES: usize = 64 * 1024;
/// Syntax errors skipped before the document is declared unreadable.
const MAX_RECOVERED_ERRORS: usize = 32;
/// Warnings kept per report; a pathological document must not grow them unbounded.
const MAX_WARNINGS: usize = 50;
/// Longest value read (a report ID, a domain, a comment…).
const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Bytes read and tokenised at a time. Also the longest stretch without a
/// `>` that is accepted: it bounds memory whatever a hostile document holds.
const WINDOW_BYTES: usize = 1024 * 1024;

const DMARC_2_NAMESPACE: &str = "urn:ietf:params:xml:ns:dmarc-2.0";

/// Why a document is not a usable aggregate report.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    #[error("not a DMARC aggregate report: no <feedback> root element")]
    NoFeedbackRoot,
    #[error("XML document type declarations (DOCTYPE) are refused, since they enable entity-expansion attacks (at byte {position})")]
    DoctypeRefused { position: u64 },
    #[error("XML nests deeper than {limit} elements at {path}")]
    TooDeep { limit: usize, path: String },
    #[error("the document ends before </feedback> (truncated report?) inside {path}")]
    Truncated { path: String },
    #[error("missing required element {path}")]
    Missing { path: String },
    #[error("{path}: {value:?} is not {expected}")]
    InvalidValue {
        path: String,
        value: String,
        expected: &'static str,
    },
    #[error("{path}: a value longer than {limit} bytes")]
    ValueTooLong { path: String, limit: usize },
    #[error("more than {limit} bytes without a tag boundary; not a report")]
    RunTooLong { limit: usize },
    #[error("unreadable XML at byte {position}: {message}")]
    Malformed { position: u64, message: String },
    #[error("reading the report failed: {0}")]
    Io(#[source] std::io::Error),
}

/// Parses an aggregate report from a reader, streaming.
///
/// The input is read in windows of `WINDOW_BYTES`, each cut just after its
/// last `>`, and each window is tokenised by quick-xml straight from the
/// slice (no per-event copying). The element stack lives in `ParserState`,
/// so a window may start and end anywhere between two tags.
pub fn parse<R: Read>(mut input: R) -> Result<AggregateReport, AggregateError> {
    let mut state = ParserState::default();
    let mut window: Vec<u8> = Vec::with_capacity(WINDOW_BYTES + WINDOW_BYTES / 4);
    let mut offset = 0u64;
    loop {
        let at_end = fill_window(&mut input, &mut window)?;
        let cut = if at_end {
            window.len()
        } else {
            match memchr::memrchr(b'>', &window) {
                Some(last) => last + 1,
                // No tag boundary in a whole window: this is no report.
                None => {
                    return Err(AggregateError::RunTooLong {
                        limit: WINDOW_BYTES,
                    })
                }
            }
        };
        // Checked per window rather than trusted to the tokeniser, so that a
        // declaration split across two windows is refused all the same.
        if let Some(position) = find_declaration(&window[..cut]) {
            return Err(AggregateError::DoctypeRefused {
                position: offset + position as u64,
            });
        }
        parse_window(&mut state, &window[..cut], offset)?;
        window.drain(..cut);
        offset += cut as u64;
        if at_end {
            break;
        }
    }
    state.finish()
}

/// Reads until the window holds `WINDOW_BYTES` or the input ends; returns
/// whether it ended.
fn fill_window<R: Read>(input: &mut R, window: &mut Vec<u8>) -> Result<bool, AggregateError> {
    while window.len() < WINDOW_BYTES {
        let wanted = (WINDOW_BYTES - window.len()) as u64;
        let read = input
            .by_ref()
            .take(wanted)
            .read_to_end(window)
            .map_err(AggregateError::Io)?;
        if read == 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `<!DOCTYPE` or `<!ENTITY`, in any case.
fn find_declaration(window: &[u8]) -> Option<usize> {
    memchr::memmem::find_iter(window, b"<!").find(|&position| {
        let rest = &window[position + 2..];
        let keyword =
            |word: &[u8]| rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word);
        keyword(b"DOCTYPE") || keyword(b"ENTITY")
    })
}

fn parse_window(state: &mut ParserState, window: &[u8], offset: u64) -> Result<(), AggregateError> {
    let mut reader = Reader::from_reader(window);
    let config = reader.config_mut();
    // The parser keeps its own stack and forgives mismatched end tags.
    config.check_end_names = false;
    config.allow_unmatched_ends = true;
    config.allow_dangling_amp = true;
    config.check_comments = false;
    config.trim_markup_names_in_closing_tags = true;

    let mut last_error_position = None;
    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(error) => {
                let position = offset + reader.error_position();
                state.recovered_errors += 1;
                if state.recovered_errors > MAX_RECOVERED_ERRORS
                    || last_error_position == Some(reader.buffer_position())
                {
                    return Err(AggregateError::Malformed {
                        position,
                        message: error.to_string(),
                    });
                }
                last_error_position = Some(reader.buffer_position());
                state.warn(format!(
                    "skipped unreadable XML at byte {position}: {error}"
                ));
                continue;
            }
        };
        match event {
            Event::Start(start) => state.start(&start, false)?,
            Event::Empty(start) => state.start(&start, true)?,
            Event::End(end) => state.end(end.local_name().as_ref())?,
            Event::Text(text) => state.text(&text),
            Event::CData(data) => state.cdata(&data),
            Event::GeneralRef(reference) => state.general_ref(&reference),
            Event::DocType(_) => {
                return Err(AggregateError::DoctypeRefused {
                    position: offset + reader.buffer_position(),
                })
            }
            Event::Decl(decl) => {
                if let Some(Ok(encoding)) = decl.encoding() {
                    state.latin1 = is_latin1_label(&String::from_utf8_lossy(&encoding));
                }
            }
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => return Ok(()),
        }
    }
}

/// Parses an aggregate report held in memory.
pub fn parse_bytes(input: &[u8]) -> Result<AggregateReport, AggregateError> {
    parse(input)
}

/// Single-byte encodings some reporters declare. Windows-1252 differs from
/// Latin-1 only in 0x80–0x9F, which report values do not use in practice.
fn is_latin1_label(label: &str) -> bool {
    matches!(
        label.trim().to_ascii_lowercase().as_str(),
        "iso-8859-1" | "iso8859-1" | "latin1" | "latin-1" | "windows-1252" | "cp1252" | "us-ascii"
    )
}

/// One open element.
struct Frame {
    tag: Tag,
    /// Whether the element's text is a value we read.
    leaf: bool,
    /// The local name of an element we do not know, to match its end tag.
    unknown_name: Option<Box<[u8]>>,
}

/// Raw XML being copied for an extension element.
struct Capture {
    xml: Vec<u8>,
    depth: usize,
    truncated: bool,
    /// Whether it belongs to the current record (or to the report).
    in_record: bool,
}

#[derive(Default)]
struct ParserState {
    stack: Vec<Frame>,
    text: String,
    latin1: bool,
    seen_root: bool,
    root_closed: bool,
    recovered_errors: usize,
    capture: Option<Capture>,
    value_too_long: bool,
    strings: Interner,

    version: Option<String>,
    namespace: Option<String>,
    org_name: Option<String>,
    email: Option<String>,
    extra_contact_info: Option<String>,
    report_id: Option<String>,
    begin: Option<String>,
    end: Option<String>,
    errors: Vec<String>,
    generator: Option<String>,
    policy: PolicyPublished,
    policy_closed: bool,
    saw_dmarcbis_element: bool,
    extensions: Vec<String>,
    record: Option<Record>,
    records: Vec<Record>,
    warnings: Vec<String>,
}

impl ParserState {
    fn warn(&mut self, message: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(message);
        } else if self.warnings.len() == MAX_WARNINGS {
            self.warnings.push("further warnings omitted".to_string());
        }
    }

    fn path(&self) -> String {
        let mut path = String::new();
        for frame in &self.stack {
            path.push('/');
            match &frame.unknown_name {
                Some(name) => path.push_str(&String::from_utf8_lossy(name)),
                None => path.push_str(frame.tag.name()),
            }
            if frame.tag == Tag::Record {
                path.push_str(&format!("[{}]", self.records.len() + 1));
            }
        }
        path
    }

    fn top(&self) -> Option<&Frame> {
        self.stack.last()
    }

    fn start(&mut self, start: &BytesStart<'_>, empty: bool) -> Result<(), AggregateError> {
        if let Some(capture) = &mut self.capture {
            capture.push(b"<", start, if empty { b"/>" } else { b">" });
            if !empty {
                capture.depth += 1;
            } else if capture.depth == 0 {
                self.finish_capture();
            }
            return Ok(());
        }

        // An unescaped '<' inside a value ("bad<xml.net", "<a@b.c>" in
        // <email>) reaches us as a start tag; it is part of the text.
        if self.top().is_some_and(|frame| frame.leaf) {
            self.absorb_tag_as_text(start, empty)?;
            return Ok(());
        }

        let local = start.local_name();
        let name = local.as_ref();
        let parent = self.top().map(|frame| frame.tag);
        let base = Tag::from_local_name(name);

        if !self.seen_root {
            if base == Tag::Feedback {
                self.seen_root = true;
                self.namespace = root_namespace(start);
                self.push(Tag::Feedback, false, None)?;
                if empty {
                    self.end(name)?;
                }
            } else if !empty {
                // Anything before the root (IKEA's unclosed <xs:schema>) is skipped.
                self.push(Tag::Unknown, false, Some(name))?;
            }
            return Ok(());
        }

        let tag = base.in_context(parent);
        if parent == Some(Tag::Feedback) && tag == Tag::Extension
            || parent == Some(Tag::Record) && tag == Tag::Unknown
        {
            self.begin_capture(start, empty, parent == Some(Tag::Record));
            return Ok(());
        }

        let mut tag = tag;
        match (parent, tag) {
            (Some(Tag::Feedback), Tag::PolicyPublished) if self.policy_closed => {
                // A second <policy_published> (seen from some generators): keep the first.
                self.warn("a second <policy_published> was ignored".to_string());
                tag = Tag::Unknown;
            }
            (Some(Tag::Feedback), Tag::Record) => self.record = Some(empty_record()),
            (Some(Tag::PolicyEvaluated), Tag::Reason) => {
                if let Some(record) = &mut self.record {
                    record
                        .policy_evaluated
                        .reasons
                        .push(OverrideReason::default());
                }
            }
            (Some(Tag::AuthResults), Tag::DkimAuth) => {
                if let Some(record) = &mut self.record {
                    record.auth_results.dkim.push(DkimAuthResult::default());
                }
            }
            (Some(Tag::AuthResults), Tag::SpfAuth) => {
                if let Some(record) = &mut self.record {
                    record.auth_results.spf.push(SpfAuthResult::default());
                }
            }
            _ => {}
        }
        if matches!(
            tag,
            Tag::Np | Tag::Testing | Tag::DiscoveryMethod | Tag::Generator
        ) {
            self.saw_dmarcbis_element = true;
        }

        let leaf = tag.is_leaf(parent);
        let unknown_name = (tag == Tag::Unknown).then_some(name);
        self.push(tag, leaf, unknown_name)?;
        if empty {
            let frame = self.stack.pop().expect("frame pushed just above");
            self.close(frame)?;
        }
        Ok(())
    }

    fn push(
        &mut self,
        tag: Tag,
        leaf: bool,
        unknown_name: Option<&[u8]>,
    ) -> Result<(), AggregateError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(AggregateError::TooDeep {
                limit: MAX_DEPTH,
                path: self.path(),
            });
        }
        if let Some(parent) = self.stack.last().filter(|frame| !frame.leaf) {
            let container = parent.tag;
            self.note_stray_text(container);
        }
        self.stack.push(Frame {
            tag,
            leaf,
            unknown_name: unknown_name.map(Box::from),
        });
        self.text.clear();
        Ok(())
    }

    fn absorb_tag_as_text(
        &mut self,
        start: &BytesStart<'_>,
        empty: bool,
    ) -> Result<(), AggregateError> {
        let raw: &[u8] = start;
        let leaf_name = self.top().map(|frame| frame.tag.name()).unwrap_or_default();
        let closing = format!("</{leaf_name}");
        if let Some(position) = find(raw, closing.as_bytes()) {
            // "<xml.net</header_from>": the value's end tag hid inside the fake tag.
            self.text.push('<');
            let before = self.decode(&raw[..position]).into_owned();
            self.text.push_str(&before);
            let frame = self.stack.pop().expect("a leaf frame is on the stack");
            return self.close(frame);
        }
        let inner = self.decode(raw).into_owned();
        self.text.push('<');
        self.text.push_str(&inner);
        self.text.push_str(if empty { "/>" } else { ">" });
        Ok(())
    }

    fn begin_capture(&mut self, start: &BytesStart<'_>, empty: bool, in_record: bool) {
        let mut capture = Capture {
            xml: Vec::new(),
            depth: 0,
            truncated: false,
            in_record,
        };
        capture.push(b"<", start, if empty { b"/>" } else { b">" });
        capture.depth = usize::from(!empty);
        self.capture = Some(capture);
        if empty {
            self.finish_capture();
        }
    }

    fn finish_capture(&mut self) {
        let Some(capture) = self.capture.take() else {
            return;
        };
        if capture.truncated {
            self.warn(format!(
                "an extension element was cut at {MAX_EXTENSION_BYTES} bytes"
            ));
        }
        let xml = String::from_utf8_lossy(&capture.xml).into_owned();
        match (&mut self.record, capture.in_record) {
            (Some(record), true) => record.extensions.push(xml),
            _ => self.extensions.push(xml),
        }
    }

    fn end(&mut self, name: &[u8]) -> Result<(), AggregateError> {
        if let Some(capture) = &mut self.capture {
            capture.append(b"</");
            capture.append(name);
            capture.append(b">");
            capture.depth = capture.depth.saturating_sub(1);
            if capture.depth == 0 {
                self.finish_capture();
            }
            return Ok(());
        }
        let base = Tag::from_local_name(name);
        let matching = self.stack.iter().rposition(|frame| {
            frame.tag.base() == base
                && (base != Tag::Unknown || frame.unknown_name.as_deref() == Some(name))
        });
        let Some(index) = matching else {
            if !self.stack.is_empty() {
                let name = String::from_utf8_lossy(name).into_owned();
                self.warn(format!(
                    "ignored the end tag </{name}>, which closes nothing"
                ));
            }
            return Ok(());
        };
        while self.stack.len() > index + 1 {
            let frame = self.stack.pop().expect("stack is longer than index");
            if frame.tag != Tag::Unknown {
                let name = String::from_utf8_lossy(name).into_owned();
                self.warn(format!(
                    "<{}> was not closed before </{name}>",
                    frame.tag.name()
                ));
            }
            self.close(frame)?;
        }
        let frame = self.stack.pop().expect("index is within the stack");
        self.close(frame)
    }

    /// Handles the end of an element: stores a value or completes a container.
    fn close(&mut self, frame: Frame) -> Result<(), AggregateError> {
        let parent = self.top().map(|frame| frame.tag);
        if frame.leaf {
            if std::mem::take(&mut self.value_too_long) {
                let mut path = self.path();
                path.push('/');
                path.push_str(frame.tag.name());
                return Err(AggregateError::ValueTooLong {
                    path,
                    limit: MAX_VALUE_BYTES,
                });
            }
            let text = std::mem::take(&mut self.text);
            let value = text.trim();
            let value = (!value.is_empty()).then_some(value);
            self.assign(parent, frame.tag, value)?;
            self.text = text;
            self.text.clear();
            return Ok(());
        }
        self.note_stray_text(frame.tag);
        match frame.tag {
            Tag::Record if parent == Some(Tag::Feedback) => {
                if let Some(record) = self.record.take() {
                    self.records.push(record);
                }
            }
            Tag::PolicyPublished if parent == Some(Tag::Feedback) => self.policy_closed = true,
            Tag::Feedback => self.root_closed = true,
            _ => {}
        }
        Ok(())
    }

    /// Text directly inside a container is never a value: keep only a short
    /// sample of it, for the warning, so it cannot grow memory.
    fn note_container_text(&mut self, raw: &[u8]) {
        if self.text.len() < 64 && raw.iter().any(|byte| !byte.is_ascii_whitespace()) {
            let sample = String::from_utf8_lossy(&raw[..raw.len().min(64)]).into_owned();
            self.text.push_str(&sample);
        }
    }

    fn note_stray_text(&mut self, container: Tag) {
        let stray = self.text.trim();
        if !stray.is_empty() && container != Tag::Unknown {
            let message = format!("ignored stray text {stray:?} in <{}>", container.name());
            self.warn(message);
        }
        self.text.clear();
    }

    fn assign(
        &mut self,
        parent: Option<Tag>,
        tag: Tag,
        value: Option<&str>,
    ) -> Result<(), AggregateError> {
        let owned = || value.map(str::to_string);
        let Some(parent) = parent else { return Ok(()) };
        // Record-level strings repeat from row to row (the same domains and
        // selectors thousands of times): share one allocation per value.
        let shared = match tag {
            Tag::Comment
            | Tag::HeaderFrom
            | Tag::EnvelopeFrom
            | Tag::EnvelopeTo
            | Tag::Domain
            | Tag::Selector
            | Tag::HumanResult => value.map(|text| self.strings.intern(text)),
            _ => None,
        };
        match (parent, tag) {
            (Tag::Feedback, Tag::Version) => self.version = owned(),
            (Tag::ReportMetadata, Tag::OrgName) => self.org_name = owned(),
            (Tag::ReportMetadata, Tag::Email) => self.email = owned(),
            (Tag::ReportMetadata, Tag::ExtraContactInfo) => self.extra_contact_info = owned(),
            (Tag::ReportMetadata, Tag::ReportId) => self.report_id = owned(),
            (Tag::ReportMetadata, Tag::Error) => self.errors.extend(owned()),
            (Tag::ReportMetadata, Tag::Generator) => self.generator = owned(),
            (Tag::DateRange, Tag::Begin) => self.begin = owned(),
            (Tag::DateRange, Tag::End) => self.end = owned(),
            (Tag::PolicyPublished, _) => self.assign_policy(tag, value),
            (Tag::Row, Tag::SourceIp) => {
                if let Some(record) = &mut self.record {
                    match value.map(parse_ip) {
                        Some(Some(ip)) => record.source_ip = Some(ip),
                        Some(None) => record.invalid_source_ip = value.map(Box::from),
                        None => {}
                    }
                }
            }
            (Tag::Row, Tag::Count) => {
                let count = match value {
                    Some(text) => {
                        text.parse::<u64>()
                            .map_err(|_| AggregateError::InvalidValue {
                                path: format!("{}/count", self.path()),
                                value: text.to_string(),
                                expected: "a message count",
                            })?
                    }
                    None => 0,
                };
                if let Some(record) = &mut self.record {
                    record.count = count;
                }
            }
            (Tag::PolicyEvaluated, _) => {
                if let Some(record) = &mut self.record {
                    let evaluated = &mut record.policy_evaluated;
                    match tag {
                        Tag::Disposition => evaluated.disposition = value.map(Disposition::parse),
                        Tag::Dkim => evaluated.dkim = value.map(DmarcResult::parse),
                        Tag::Spf => evaluated.spf = value.map(DmarcResult::parse),
                        _ => {}
                    }
                }
            }
            (Tag::Reason, _) => {
                let reason = self
                    .record
                    .as_mut()
                    .and_then(|record| record.policy_evaluated.reasons.last_mut());
                if let Some(reason) = reason {
                    match tag {
                        Tag::Type => reason.kind = value.map(OverrideType::parse),
                        Tag::Comment => reason.comment = shared,
                        _ => {}
                    }
                }
            }
            (Tag::Identifiers, _) => {
                if let Some(record) = &mut self.record {
                    let identifiers = &mut record.identifiers;
                    match tag {
                        Tag::HeaderFrom => identifiers.header_from = shared,
                        Tag::EnvelopeFrom => identifiers.envelope_from = shared,
                        Tag::EnvelopeTo => identifiers.envelope_to = shared,
                        _ => {}
                    }
                }
            }
            (Tag::DkimAuth, _) => {
                let dkim = self
                    .record
                    .as_mut()
                    .and_then(|r| r.auth_results.dkim.last_mut());
                if let Some(dkim) = dkim {
                    match tag {
                        Tag::Domain => dkim.domain = shared,
                        Tag::Selector => dkim.selector = shared,
                        Tag::Result => dkim.result = value.map(DkimResult::parse),
                        Tag::HumanResult => dkim.human_result = shared,
                        _ => {}
                    }
                }
            }
            (Tag::SpfAuth, _) => {
                let spf = self
                    .record
                    .as_mut()
                    .and_then(|r| r.auth_results.spf.last_mut());
                if let Some(spf) = spf {
                    match tag {
                        Tag::Domain => spf.domain = shared,
                        Tag::Scope => spf.scope = value.map(SpfScope::parse),
                        Tag::Result => spf.result = value.map(SpfResult::parse),
                        Tag::HumanResult => spf.human_result = shared,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn assign_policy(&mut self, tag: Tag, value: Option<&str>) {
        let policy = &mut self.policy;
        let owned = || value.map(str::to_string);
        match tag {
            Tag::Domain => policy.domain = value.unwrap_or_default().to_string(),
            Tag::Adkim => policy.adkim = value.map(Alignment::parse),
            Tag::Aspf => policy.aspf = value.map(Alignment::parse),
            Tag::P => policy.p = value.map(Disposition::parse),
            Tag::Sp => policy.sp = value.map(Disposition::parse),
            Tag::Np => policy.np = value.map(Disposition::parse),
            Tag::Fo => policy.fo = owned(),
            Tag::Testing => policy.testing = value.map(str::to_ascii_lowercase),
            Tag::DiscoveryMethod => policy.discovery_method = value.map(str::to_ascii_lowercase),
            Tag::Pct => match value.map(str::parse::<u8>) {
                Some(Ok(pct)) if pct <= 100 => policy.pct = Some(pct),
                Some(_) => {
                    let raw = value.unwrap_or_default().to_string();
                    self.warn(format!("ignored <pct> {raw:?}, which is not 0-100"));
                }
                None => {}
            },
            _ => {}
        }
    }

    fn text(&mut self, raw: &[u8]) {
        if let Some(capture) = &mut self.capture {
            capture.append(raw);
            return;
        }
        if !self.top().is_some_and(|frame| frame.leaf) {
            self.note_container_text(raw);
            return;
        }
        if self.text.len() + raw.len() > MAX_VALUE_BYTES {
            self.value_too_long = true;
            return;
        }
        match self.decode(raw) {
            Cow::Borrowed(text) => self.text.push_str(text),
            Cow::Owned(text) => {
                if !self.latin1 {
                    let at = self.path();
                    self.warn(format!("replaced bytes that are not UTF-8 in {at}"));
                }
                self.text.push_str(&text);
            }
        }
    }

    fn cdata(&mut self, raw: &[u8]) {
        if let Some(capture) = &mut self.capture {
            capture.append(b"<![CDATA[");
            capture.append(raw);
            capture.append(b"]]>");
            return;
        }
        let decoded = self.decode(raw).into_owned();
        self.text.push_str(&decoded);
    }

    fn general_ref(&mut self, reference: &BytesRef<'_>) {
        let raw: &[u8] = reference;
        if let Some(capture) = &mut self.capture {
            capture.append(b"&");
            capture.append(raw);
            capture.append(b";");
            return;
        }
        // Only the five predefined entities and character references exist:
        // there is no DTD, so nothing can define more.
        let resolved = match raw {
            b"lt" => Some('<'),
            b"gt" => Some('>'),
            b"amp" => Some('&'),
            b"apos" => Some('\''),
            b"quot" => Some('"'),
            _ => reference.resolve_char_ref().ok().flatten(),
        };
        match resolved {
            Some(character) => self.text.push(character),
            None => {
                let name = String::from_utf8_lossy(raw).into_owned();
                self.warn(format!("kept the undefined entity &{name}; as text"));
                self.text.push('&');
                self.text.push_str(&name);
                self.text.push(';');
            }
        }
    }

    fn decode<'a>(&self, raw: &'a [u8]) -> Cow<'a, str> {
        if self.latin1 {
            if raw.is_ascii() {
                return Cow::Borrowed(std::str::from_utf8(raw).unwrap_or_default());
            }
            return Cow::Owned(raw.iter().map(|&byte| char::from(byte)).collect());
        }
        String::from_utf8_lossy(raw)
    }

    fn finish(mut self) -> Result<AggregateReport, AggregateError> {
        if !self.seen_root {
            return Err(AggregateError::NoFeedbackRoot);
        }
        if !self.root_closed {
            return Err(AggregateError::Truncated { path: self.path() });
        }
        if let Some(capture) = &self.capture {
            if capture.depth > 0 {
                self.finish_capture();
            }
        }

        let report_id = self
            .report_id
            .take()
            .ok_or_else(|| missing("/feedback/report_metadata/report_id"))?;
        let begin = parse_timestamp(self.begin.as_deref(), "begin")?;
        let end = parse_timestamp(self.end.as_deref(), "end")?;
        if self.policy.domain.is_empty() {
            return Err(missing("/feedback/policy_published/domain"));
        }
        let org_name = match self.org_name.take() {
            Some(name) => name,
            None => {
                let fallback = self
                    .email
                    .as_deref()
                    .and_then(|email| email.rsplit_once('@'))
                    .map(|(_, domain)| domain.trim_end_matches('>').to_string())
                    .filter(|domain| !domain.is_empty())
                    .ok_or_else(|| missing("/feedback/report_metadata/org_name"))?;
                self.warn(format!(
                    "<org_name> is empty; using {fallback:?} from <email>"
                ));
                fallback
            }
        };
        if end < begin {
            self.warn(format!(
                "the date range ends ({end}) before it begins ({begin})"
            ));
        }

        let schema = if self.namespace.as_deref() == Some(DMARC_2_NAMESPACE)
            || self.version.as_deref() == Some("2.0")
            || self.saw_dmarcbis_element
        {
            SchemaFamily::Rfc9990
        } else if self.version.is_some() {
            SchemaFamily::Rfc7489
        } else {
            SchemaFamily::Draft
        };

        Ok(AggregateReport {
            schema,
            version: self.version,
            namespace: self.namespace,
            metadata: ReportMetadata {
                org_name,
                email: self.email,
                extra_contact_info: self.extra_contact_info,
                report_id,
                begin,
                end,
                errors: self.errors,
                generator: self.generator,
            },
            policy_published: self.policy,
            extensions: self.extensions,
            records: self.records,
            warnings: self.warnings,
        })
    }
}

impl Capture {
    fn append(&mut self, bytes: &[u8]) {
        if self.xml.len() + bytes.len() > MAX_EXTENSION_BYTES {
            self.truncated = true;
            return;
        }
        self.xml.extend_from_slice(bytes);
    }

    fn push(&mut self, open: &[u8], start: &BytesStart<'_>, close: &[u8]) {
        self.append(open);
        self.append(start);
        self.append(close);
    }
}

fn empty_record() -> Record {
    Record {
        source_ip: None,
        invalid_source_ip: None,
        count: 0,
        policy_evaluated: PolicyEvaluated::default(),
        identifiers: Identifiers::default(),
        auth_results: AuthResults::default(),
        extensions: Vec::new(),
    }
}

fn missing(path: &str) -> AggregateError {
    AggregateError::Missing {
        path: path.to_string(),
    }
}

/// Epoch seconds; a fractional part (seen from some generators) is dropped.
fn parse_timestamp(value: Option<&str>, element: &'static str) -> Result<i64, AggregateError> {
    let path = format!("/feedback/report_metadata/date_range/{element}");
    let value = value.ok_or_else(|| missing(&path))?;
    let whole = value.split_once('.').map_or(value, |(whole, _)| whole);
    whole
        .trim()
        .parse::<i64>()
        .map_err(|_| AggregateError::InvalidValue {
            path,
            value: value.to_string(),
            expected: "a Unix timestamp",
        })
}

/// IPv4 or IPv6 (compressed forms too); tolerates brackets around IPv6.
fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim_start_matches('[').trim_end_matches(']');
    text.parse().ok()
}

fn root_namespace(start: &BytesStart<'_>) -> Option<String> {
    let prefix = start.name().prefix().map(|prefix| prefix.as_ref().to_vec());
    start.attributes().flatten().find_map(|attribute| {
        let key = attribute.key.as_ref();
        let wanted = match &prefix {
            Some(prefix) => key.strip_prefix(b"xmlns:") == Some(prefix.as_slice()),
            None => key == b"xmlns",
        };
        wanted.then(|| String::from_utf8_lossy(&attribute.value).trim().to_string())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Hands out one shared copy of each distinct string. Bounded: past
/// `MAX_INTERNED` distinct values it stops remembering new ones.
#[derive(Default)]
struct Interner {
    known: std::collections::HashSet<Arc<str>>,
}

const MAX_INTERNED: usize = 200_000;

impl Interner {
    fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.known.get(text) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(text);
        if self.known.len() < MAX_INTERNED {
            self.known.insert(Arc::clone(&shared));
        }
        shared
    }
}
