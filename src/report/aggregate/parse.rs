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
//! What it never tolerates: a DOCTYPE with an internal subset or an entity
//! declaration (no DTD, no entity expansion, so no billion-laughs; a bare
//! `<!DOCTYPE feedback>` declares nothing and is skipped), nesting past
//! `MAX_DEPTH`, a document that ends before `</feedback>` (a truncated
//! report stored now would make the complete one look like a duplicate
//! later).

use std::io::{Cursor, Read};

use quick_xml::events::Event;
use quick_xml::Reader;

use super::encoding::{self, Detected, Utf8Decoder};
use super::state::ParserState;
use super::*;
use crate::report::ParseLimits;

/// Syntax errors skipped before the document is declared unreadable.
const MAX_RECOVERED_ERRORS: usize = 32;
/// Bytes read and tokenised at a time. Also the longest stretch without a
/// `>` that is accepted: it bounds memory whatever a hostile document holds.
const WINDOW_BYTES: usize = 4 * 1024 * 1024;
/// A stretch of records at least this long is split between two threads.
const PARALLEL_MIN_BYTES: usize = 1024 * 1024;
const RECORD_END: &[u8] = b"</record>";

/// Why a document is not a usable aggregate report.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    #[error("not a DMARC aggregate report: no <feedback> root element")]
    NoFeedbackRoot,
    #[error("not a DMARC aggregate report: no <feedback> root element in the document decoded as {encoding}")]
    NoFeedbackRootDecoded { encoding: &'static str },
    #[error("the document's encoding {encoding} {problem}")]
    Encoding { encoding: String, problem: String },
    #[error("XML document type declarations (DOCTYPE) with an internal subset, and entity declarations, are refused, since they enable entity-expansion attacks (at byte {position})")]
    DoctypeRefused { position: u64 },
    #[error("more than {limit} records in one report (limit decode.max_aggregate_records)")]
    TooManyRecords { limit: u64 },
    #[error("empty report: all {dropped} records have no source IP and a count of 0")]
    EmptyReport { dropped: u64 },
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
    /// The records parsed so far could not be passed on (stored).
    #[error("{0}")]
    Sink(String),
}

/// Parses an aggregate report from a reader, streaming, with the default limits.
pub fn parse<R: Read>(input: R) -> Result<AggregateReport, AggregateError> {
    parse_with(input, &ParseLimits::default())
}

/// Parses an aggregate report from a reader, streaming. A document in an
/// encoding other than UTF-8 is decoded to UTF-8 on the way in.
pub fn parse_with<R: Read>(
    input: R,
    limits: &ParseLimits,
) -> Result<AggregateReport, AggregateError> {
    parse_inner(input, limits, None)
}

/// Takes runs of records as a report is parsed (`parse_streaming`): the
/// report as read so far, its header and this run's records. An error
/// (the store failed) ends the parse.
pub type RecordSink<'a> = dyn FnMut(AggregateReport) -> Result<(), String> + 'a;

/// `parse_with`, handing the records to `sink` in runs of at least
/// `run_records` as they are read (after the report's metadata and
/// policy), so that a report of millions of records is never held whole.
/// The report returned holds the records after the last run.
pub fn parse_streaming<R: Read>(
    input: R,
    limits: &ParseLimits,
    run_records: usize,
    sink: &mut RecordSink<'_>,
) -> Result<AggregateReport, AggregateError> {
    parse_inner(input, limits, Some((sink, run_records.max(1))))
}

fn parse_inner<R: Read>(
    mut input: R,
    limits: &ParseLimits,
    mut sink: Option<(&mut RecordSink<'_>, usize)>,
) -> Result<AggregateReport, AggregateError> {
    // The head is read into the parser's window itself, which the rest of
    // a UTF-8 document then follows: chaining the head in front of the
    // input instead would hide the reader's read_buf behind
    // `Chain`, and std would zero the 5 MiB window before filling it
    // (2.5 ms of a 3 ms parse of a small gzip report).
    let mut window = Vec::with_capacity(WINDOW_BYTES + WINDOW_BYTES / 4);
    (&mut input)
        .take(HEAD_BYTES as u64)
        .read_to_end(&mut window)
        .map_err(AggregateError::Io)?;
    let mut state = ParserState::new(limits);
    match encoding::detect(&window)? {
        Detected::Utf8 { warning } => {
            if let Some(warning) = warning {
                state.warn(warning);
            }
            parse_stream(input, state, window, sink.as_mut())
        }
        Detected::Decode(encoding) => {
            let head = std::mem::take(&mut window);
            let decoded = Utf8Decoder::new(Cursor::new(head).chain(input), encoding);
            let replaced = std::rc::Rc::clone(&decoded.replaced);
            let window = Vec::with_capacity(WINDOW_BYTES + WINDOW_BYTES / 4);
            let mut report = parse_stream(decoded, state, window, sink.as_mut()).map_err(
                |error| match error {
                    AggregateError::NoFeedbackRoot => AggregateError::NoFeedbackRootDecoded {
                        encoding: encoding.name(),
                    },
                    other => other,
                },
            )?;
            if replaced.get() {
                report.warnings.push(format!(
                    "replaced bytes that are not valid {} with U+FFFD",
                    encoding.name()
                ));
            }
            Ok(report)
        }
    }
}

/// Bytes looked at to decide the encoding: the byte order mark and the
/// XML declaration are at the very start.
const HEAD_BYTES: usize = 1024;

/// Parses UTF-8 XML, `window` holding its first bytes already.
///
/// The input is read in windows of `WINDOW_BYTES`, each cut just after its
/// last `>`, and each window is tokenised by quick-xml straight from the
/// slice (no per-event copying). The element stack lives in `ParserState`,
/// so a window may start and end anywhere between two tags.
fn parse_stream<R: Read>(
    mut input: R,
    mut state: ParserState,
    mut window: Vec<u8>,
    mut sink: Option<&mut (&mut RecordSink<'_>, usize)>,
) -> Result<AggregateReport, AggregateError> {
    let mut offset = 0u64;
    loop {
        let at_end = fill_window(&mut input, &mut window)?;
        // Cut after the last whole record where there is one, so that the
        // next window starts between records (and can be split in two).
        let record_cut = (!at_end)
            .then(|| memchr::memmem::rfind(&window, RECORD_END))
            .flatten()
            .map(|position| position + RECORD_END.len());
        let cut = if at_end {
            window.len()
        } else if let Some(cut) = record_cut {
            cut
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
        if state.between_records() && cut >= PARALLEL_MIN_BYTES {
            parse_records_in_parallel(&mut state, &window[..cut], offset)?;
        } else {
            parse_window(&mut state, &window[..cut], offset)?;
        }
        window.drain(..cut);
        offset += cut as u64;
        if let Some((sink, run)) = sink.as_mut() {
            if state.records.len() >= *run {
                if let Some(mut header) = state.header_so_far() {
                    header.records = std::mem::take(&mut state.records);
                    state.handed_out += header.records.len() as u64;
                    sink(header).map_err(AggregateError::Sink)?;
                }
            }
        }
        if at_end {
            break;
        }
    }
    state.finish()
}

/// Parses a stretch that starts between records on two threads: the first
/// half on a helper thread, the second here, each into a child state; the
/// halves meet at a `</record>`. A report of 100,000 records is nearly all
/// such stretches, so this halves its parse time on two cores.
///
/// If either half met anything but clean records (broken XML, a warning, an
/// element outside a record), the stretch is parsed again the ordinary way,
/// so the result is always what a sequential parse gives.
fn parse_records_in_parallel(
    state: &mut ParserState,
    stretch: &[u8],
    offset: u64,
) -> Result<(), AggregateError> {
    let middle = stretch.len() / 2;
    let split = memchr::memmem::find(&stretch[middle..], RECORD_END)
        .map(|position| middle + position + RECORD_END.len());
    let Some(split) = split.filter(|&split| split < stretch.len()) else {
        return parse_window(state, stretch, offset);
    };
    let (first, second) = stretch.split_at(split);
    let mut first_state = state.fork();
    let mut second_state = state.fork();
    let (first_result, second_result) = std::thread::scope(|scope| {
        let helper = scope.spawn(|| parse_window(&mut first_state, first, offset));
        let second_result = parse_window(&mut second_state, second, offset + split as u64);
        let first_result = helper
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (first_result, second_result)
    });
    state.controls_possible |= first_state.controls_possible || second_state.controls_possible;
    let clean = first_result.is_ok()
        && second_result.is_ok()
        && state.is_clean_continuation(&first_state)
        && state.is_clean_continuation(&second_state);
    if !clean {
        return parse_window(state, stretch, offset);
    }
    state.absorb(first_state)?;
    state.absorb(second_state)
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

/// `<!ENTITY`, or a `<!DOCTYPE` that may declare something (an internal
/// subset in `[…]`), in any case. `<!DOCTYPE feedback>` declares nothing.
fn find_declaration(window: &[u8]) -> Option<usize> {
    memchr::memmem::find_iter(window, b"<!").find(|&position| {
        let rest = &window[position + 2..];
        let keyword =
            |word: &[u8]| rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word);
        keyword(b"ENTITY") || keyword(b"DOCTYPE") && declares_something(&rest[7..])
    })
}

/// Whether a DOCTYPE's text (after the keyword) has an internal subset.
/// Without its closing `>` in the window, it cannot be told harmless.
fn declares_something(doctype: &[u8]) -> bool {
    match memchr::memchr(b'>', doctype) {
        Some(end) => doctype[..end].contains(&b'['),
        None => true,
    }
}

fn parse_window(state: &mut ParserState, window: &[u8], offset: u64) -> Result<(), AggregateError> {
    // Run here rather than once per window, so that the two halves of a
    // parallel stretch each test their own bytes, on their own thread.
    if !state.controls_possible {
        state.controls_possible = crate::report::text::has_control_bytes(window);
    }
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
            Event::End(end) => state.end(end.name().as_ref(), end.local_name().as_ref())?,
            Event::Text(text) => state.text(&text),
            Event::CData(data) => state.cdata(&data),
            Event::GeneralRef(reference) => state.general_ref(&reference),
            Event::DocType(doctype) => {
                // A name and perhaps an external identifier, never fetched:
                // harmless. Anything more was refused by `find_declaration`.
                if doctype.contains(&b'[') {
                    return Err(AggregateError::DoctypeRefused {
                        position: offset + reader.buffer_position(),
                    });
                }
            }
            // The encoding it declares was handled before parsing began.
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => return Ok(()),
        }
    }
}

/// Parses an aggregate report held in memory.
pub fn parse_bytes(input: &[u8]) -> Result<AggregateReport, AggregateError> {
    parse(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_gets_the_records_in_runs_with_the_header_and_the_rest_stays() {
        let report = crate::testing::aggregate_report(12_000);
        let xml = report.to_xml();
        let mut runs = Vec::new();
        let mut sink = |run: AggregateReport| {
            runs.push((run.metadata.report_id.clone(), run.records.len()));
            Ok(())
        };
        let rest =
            parse_streaming(xml.as_bytes(), &ParseLimits::default(), 1_000, &mut sink).unwrap();
        assert!(runs.len() >= 2, "{runs:?}");
        assert!(runs
            .iter()
            .all(|(id, n)| id == "synthetic-12000" && *n >= 1_000));
        let handed: usize = runs.iter().map(|(_, n)| n).sum();
        assert_eq!(handed + rest.records.len(), 12_000);
        assert_eq!(rest.metadata.report_id, "synthetic-12000");
    }

    #[test]
    fn a_sink_that_fails_ends_the_parse() {
        let xml = crate::testing::aggregate_report(12_000).to_xml();
        let mut sink = |_: AggregateReport| Err("the store is gone".to_string());
        let error =
            parse_streaming(xml.as_bytes(), &ParseLimits::default(), 100, &mut sink).unwrap_err();
        assert_eq!(error.to_string(), "the store is gone");
    }
}
