//! The parser's state: the element stack, and what each token does to it.
//! Storing values and the final checks are in `values.rs`.

use std::borrow::Cow;

use quick_xml::events::{BytesRef, BytesStart};

use super::intern::Interner;
use super::parse::AggregateError;
use super::tags::Tag;
use super::*;

/// Deeper than any real report (which nests 5 levels); deep enough to never
/// refuse a legitimate extension.
const MAX_DEPTH: usize = 64;
/// Bytes of raw XML kept per extension element.
const MAX_EXTENSION_BYTES: usize = 64 * 1024;
/// Warnings kept per report; a pathological document must not grow them unbounded.
const MAX_WARNINGS: usize = 50;
/// Longest value read (a report ID, a domain, a comment…).
const MAX_VALUE_BYTES: usize = 64 * 1024;

/// One open element.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Frame {
    pub(super) tag: Tag,
    /// Whether the element's text is a value we read.
    pub(super) leaf: bool,
    /// The local name of an element we do not know, to match its end tag.
    pub(super) unknown_name: Option<Box<[u8]>>,
}

/// Raw XML being copied for an extension element.
pub(super) struct Capture {
    pub(super) xml: Vec<u8>,
    pub(super) depth: usize,
    pub(super) truncated: bool,
    /// Whether it belongs to the current record (or to the report).
    pub(super) in_record: bool,
}

#[derive(Default)]
pub(super) struct ParserState {
    pub(super) stack: Vec<Frame>,
    pub(super) text: String,
    /// Whether a control character may be in a value: set once a window
    /// holds one (or a character reference makes one), and kept, since a
    /// value may start in the window before. Until then no value is checked.
    pub(super) controls_possible: bool,
    pub(super) seen_root: bool,
    pub(super) root_closed: bool,
    pub(super) recovered_errors: usize,
    pub(super) capture: Option<Capture>,
    pub(super) value_too_long: bool,
    pub(super) strings: Interner,

    pub(super) version: Option<String>,
    pub(super) namespace: Option<String>,
    pub(super) org_name: Option<String>,
    pub(super) email: Option<String>,
    pub(super) extra_contact_info: Option<String>,
    pub(super) report_id: Option<String>,
    pub(super) begin: Option<String>,
    pub(super) end: Option<String>,
    pub(super) errors: Vec<String>,
    pub(super) generator: Option<String>,
    pub(super) policy: PolicyPublished,
    pub(super) policy_closed: bool,
    pub(super) saw_dmarcbis_element: bool,
    pub(super) extensions: Vec<String>,
    pub(super) record: Option<Record>,
    pub(super) records: Vec<Record>,
    /// Records dropped for having no source IP and a count of 0.
    pub(super) dropped_records: u64,
    /// Records already handed to a sink (`parse_streaming`).
    pub(super) handed_out: u64,
    pub(super) max_records: u64,
    pub(super) warnings: Vec<String>,
    /// Kinds of warning already given, for those given once per report.
    pub(super) warned: Vec<String>,
}

impl ParserState {
    pub(super) fn new(limits: &crate::report::ParseLimits) -> Self {
        ParserState {
            max_records: limits.max_aggregate_records,
            ..ParserState::default()
        }
    }

    /// A warning given once per report for each `kind`, however often the
    /// case comes up (an unknown element in each of 100,000 records).
    pub(super) fn warn_once(&mut self, kind: String, message: impl FnOnce() -> String) {
        if !self.warned.contains(&kind) {
            self.warned.push(kind);
            self.warn(message());
        }
    }

    pub(super) fn warn(&mut self, message: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(message);
        } else if self.warnings.len() == MAX_WARNINGS {
            self.warnings.push("further warnings omitted".to_string());
        }
    }

    pub(super) fn path(&self) -> String {
        let mut path = String::new();
        for frame in &self.stack {
            path.push('/');
            match &frame.unknown_name {
                Some(name) => path.push_str(&String::from_utf8_lossy(name)),
                None => path.push_str(frame.tag.name()),
            }
            if frame.tag == Tag::Record {
                let index = self.handed_out + self.records.len() as u64 + self.dropped_records + 1;
                path.push_str(&format!("[{index}]"));
            }
        }
        path
    }

    pub(super) fn top(&self) -> Option<&Frame> {
        self.stack.last()
    }

    pub(super) fn start(
        &mut self,
        start: &BytesStart<'_>,
        empty: bool,
    ) -> Result<(), AggregateError> {
        if let Some(capture) = &mut self.capture {
            capture.push(b"<", start, if empty { b"/>" } else { b">" });
            if !empty {
                capture.depth += 1;
                if self.stack.len() + capture.depth > MAX_DEPTH {
                    return Err(AggregateError::TooDeep {
                        limit: MAX_DEPTH,
                        path: self.path(),
                    });
                }
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
                    self.end(name, name)?;
                }
            } else if !empty {
                // Anything before the root (IKEA's unclosed <xs:schema>) is skipped.
                self.push(Tag::Unknown, false, Some(name))?;
            }
            return Ok(());
        }

        let tag = base.in_context(parent);
        if tag == Tag::Extension || tag == Tag::Unknown && parent != Some(Tag::Unknown) {
            self.note_unknown_element(parent, tag, name);
            self.begin_capture(start, empty, self.record.is_some());
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

    pub(super) fn push(
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

    pub(super) fn absorb_tag_as_text(
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

    pub(super) fn begin_capture(&mut self, start: &BytesStart<'_>, empty: bool, in_record: bool) {
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

    pub(super) fn finish_capture(&mut self) {
        let Some(capture) = self.capture.take() else {
            return;
        };
        if capture.truncated {
            self.warn(format!(
                "an extension element was cut at {MAX_EXTENSION_BYTES} bytes"
            ));
        }
        let mut xml = String::from_utf8_lossy(&capture.xml).into_owned();
        if crate::report::text::strip_controls_in_place(&mut xml) {
            self.warn("removed control characters from an extension element".to_string());
        }
        match (&mut self.record, capture.in_record) {
            (Some(record), true) => record.extensions.push(xml),
            _ => self.extensions.push(xml),
        }
    }

    /// An end tag: `qualified` as written (kept in raw XML), `name` its local name.
    pub(super) fn end(&mut self, qualified: &[u8], name: &[u8]) -> Result<(), AggregateError> {
        if let Some(capture) = &mut self.capture {
            capture.append(b"</");
            capture.append(qualified);
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
    pub(super) fn close(&mut self, frame: Frame) -> Result<(), AggregateError> {
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
            let mut text = std::mem::take(&mut self.text);
            if self.controls_possible && crate::report::text::strip_controls_in_place(&mut text) {
                let path = format!("{}/{}", self.path(), frame.tag.name());
                self.warn(format!("removed control characters from {path}"));
            }
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
                    self.keep_record(record)?;
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
    pub(super) fn note_container_text(&mut self, raw: &[u8]) {
        if self.text.len() < 64 && raw.iter().any(|byte| !byte.is_ascii_whitespace()) {
            let sample = String::from_utf8_lossy(&raw[..raw.len().min(64)]).into_owned();
            self.text.push_str(&sample);
        }
    }

    pub(super) fn note_stray_text(&mut self, container: Tag) {
        let stray = self.text.trim();
        if !stray.is_empty() && container != Tag::Unknown {
            let message = format!("ignored stray text {stray:?} in <{}>", container.name());
            self.warn(message);
        }
        self.text.clear();
    }

    pub(super) fn text(&mut self, raw: &[u8]) {
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
                let at = self.path();
                self.warn(format!("replaced bytes that are not UTF-8 in {at}"));
                self.text.push_str(&text);
            }
        }
    }

    pub(super) fn cdata(&mut self, raw: &[u8]) {
        if let Some(capture) = &mut self.capture {
            capture.append(b"<![CDATA[");
            capture.append(raw);
            capture.append(b"]]>");
            return;
        }
        let decoded = self.decode(raw).into_owned();
        self.text.push_str(&decoded);
    }

    pub(super) fn general_ref(&mut self, reference: &BytesRef<'_>) {
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
            Some(character) => {
                self.controls_possible |= character < ' ';
                self.text.push(character);
            }
            None => {
                let name = String::from_utf8_lossy(raw).into_owned();
                self.warn(format!("kept the undefined entity &{name}; as text"));
                self.text.push('&');
                self.text.push_str(&name);
                self.text.push(';');
            }
        }
    }

    /// The document is UTF-8 by now (other encodings are decoded before
    /// parsing); invalid bytes become U+FFFD. (`str::from_utf8` first takes
    /// fewer instructions on valid text but measured no faster.)
    pub(super) fn decode<'a>(&self, raw: &'a [u8]) -> Cow<'a, str> {
        String::from_utf8_lossy(raw)
    }
}

impl Capture {
    pub(super) fn append(&mut self, bytes: &[u8]) {
        if self.xml.len() + bytes.len() > MAX_EXTENSION_BYTES {
            self.truncated = true;
            return;
        }
        self.xml.extend_from_slice(bytes);
    }

    pub(super) fn push(&mut self, open: &[u8], start: &BytesStart<'_>, close: &[u8]) {
        self.append(open);
        self.append(start);
        self.append(close);
    }
}

pub(super) fn empty_record() -> Record {
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

/// Parsing one stretch of records on another thread: a child state starts
/// where its parent stands, collects records only, and is merged back.
impl ParserState {
    /// True between two `<record>`s, directly inside `<feedback>`: the one
    /// place where a stretch of input can be parsed on its own.
    pub(super) fn between_records(&self) -> bool {
        self.seen_root
            && !self.root_closed
            && self.record.is_none()
            && self.capture.is_none()
            && self
                .stack
                .last()
                .is_some_and(|frame| frame.tag == Tag::Feedback)
            && self.text.trim().is_empty()
    }

    /// A fresh state standing where this one stands.
    pub(super) fn fork(&self) -> ParserState {
        ParserState {
            stack: self.stack.clone(),
            controls_possible: self.controls_possible,
            seen_root: true,
            max_records: self.max_records,
            policy_closed: self.policy_closed,
            ..ParserState::default()
        }
    }

    /// Whether a child parsed records and nothing else, ended where it
    /// started, and met nothing it had to tolerate. Only then can its
    /// records be taken as if this state had parsed them itself; otherwise
    /// the caller re-parses the stretch here (so that warnings and errors
    /// name the right record).
    pub(super) fn is_clean_continuation(&self, child: &ParserState) -> bool {
        child.stack == self.stack
            && child.record.is_none()
            && child.capture.is_none()
            && !child.root_closed
            && !child.value_too_long
            && child.warnings.is_empty()
            && child.dropped_records == 0
            && child.recovered_errors == 0
            && child.extensions.is_empty()
            && child.errors.is_empty()
            && child.version.is_none()
            && child.org_name.is_none()
            && child.email.is_none()
            && child.report_id.is_none()
            && child.begin.is_none()
            && child.end.is_none()
            && child.generator.is_none()
            && !child.saw_dmarcbis_element
            && child.policy == PolicyPublished::default()
    }

    /// Takes a clean child's records.
    pub(super) fn absorb(&mut self, child: ParserState) -> Result<(), AggregateError> {
        self.records.extend(child.records);
        self.check_record_count()
    }
}
