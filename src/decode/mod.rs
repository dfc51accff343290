//! Finds the report payloads inside a file or a whole email. PURE: reads
//! from the reader it is given, nothing else.
//!
//! Containers (email, gzip, zip, zlib) are opened by what their bytes are,
//! not by what they are called, and every decompressed byte is counted
//! against `Limits`: a bomb ends in a typed error naming the limit and the
//! member, never in an out-of-memory. Payloads are handed to the caller as
//! streams, so a 78 MB report inside a gzip is never held in memory whole.

mod archive;
mod hint;
mod mime;
mod sniff;

use std::io::{BufRead, BufReader, Cursor, Read};

use serde::Deserialize;

use sniff::{sniff, Sniffed, SNIFF_BYTES};

use crate::report::ParseLimits;

/// Bounds on what decoding may cost. Every one is configurable.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Decompressed bytes per payload (default 512 MiB).
    pub max_decompressed_bytes: u64,
    /// Decompressed ÷ compressed size past which a stream is a bomb (default 1000).
    /// Checked once a stream has produced `ratio_check_after_bytes`, so small,
    /// very repetitive reports are never refused.
    pub max_compression_ratio: u64,
    /// Output after which the ratio is enforced (default 16 MiB).
    pub ratio_check_after_bytes: u64,
    /// Members of one zip archive (default 32; real reports hold one).
    pub max_zip_members: usize,
    /// Containers inside containers, counting the outermost (default 4:
    /// email → zip → gzip → XML is 3).
    pub max_nesting_depth: u32,
    /// Bytes of an email or zip held in memory to open it (default 256 MiB).
    pub max_container_bytes: u64,
    /// Records in one aggregate report (default 2,000,000: the largest real
    /// reports hold up to about a million).
    pub max_aggregate_records: u64,
    /// Policies in one TLS report (default 1,000; real reports hold a few).
    pub max_tls_policies: u64,
    /// Failure details under one policy of a TLS report (default 100,000).
    pub max_tls_failure_details: u64,
    /// Bytes of one JSON string, escapes included (default 64 KiB).
    pub max_json_string_bytes: u64,
    /// Bytes of one TLS report's JSON (default 16 MiB; real reports are a
    /// few KiB). Parsing one takes at most about twelve times this.
    pub max_tlsrpt_json_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let parse = ParseLimits::default();
        Limits {
            max_decompressed_bytes: 512 * 1024 * 1024,
            max_compression_ratio: 1000,
            ratio_check_after_bytes: 16 * 1024 * 1024,
            max_zip_members: 32,
            max_nesting_depth: 4,
            max_container_bytes: 256 * 1024 * 1024,
            max_aggregate_records: parse.max_aggregate_records,
            max_tls_policies: parse.max_tls_policies,
            max_tls_failure_details: parse.max_tls_failure_details,
            max_json_string_bytes: parse.max_json_string_bytes,
            max_tlsrpt_json_bytes: parse.max_tlsrpt_json_bytes,
        }
    }
}

impl Limits {
    /// The limits the report parsers apply.
    pub fn parse_limits(&self) -> ParseLimits {
        ParseLimits {
            max_aggregate_records: self.max_aggregate_records,
            max_tls_policies: self.max_tls_policies,
            max_tls_failure_details: self.max_tls_failure_details,
            max_json_string_bytes: self.max_json_string_bytes,
            max_tlsrpt_json_bytes: self.max_tlsrpt_json_bytes,
        }
    }
}

/// The kind of report a payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    /// DMARC aggregate report XML.
    AggregateXml,
    /// SMTP TLS report JSON.
    TlsRptJson,
    /// A whole email that is a DMARC failure report.
    FailureEmail,
}

/// One report payload, readable as a stream.
pub struct Payload<'a> {
    /// Where it was found: the input's name, then each container member
    /// (`report.eml › google.com!example.com!1!2.zip › report.xml`).
    pub location: String,
    pub format: PayloadFormat,
    /// The domain the report was sent for, when its email or file name
    /// says (RFC 8460 §5.3: the `TLS-Report-Domain` header, the subject's
    /// "Report Domain:", the file name's second `!` field).
    pub domain_hint: Option<String>,
    pub reader: &'a mut dyn BufRead,
}

/// The limit a decode crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    DecompressedBytes,
    CompressionRatio,
    ZipMembers,
    NestingDepth,
    ContainerBytes,
}

impl std::fmt::Display for LimitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LimitKind::DecompressedBytes => "decompressed size",
            LimitKind::CompressionRatio => "compression ratio",
            LimitKind::ZipMembers => "zip member count",
            LimitKind::NestingDepth => "nesting depth",
            LimitKind::ContainerBytes => "container size",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{location}: empty input")]
    Empty { location: String },
    #[error("{location}: not a report: unrecognised content starting {preview:?}")]
    Unrecognised { location: String, preview: String },
    #[error("{location}: the email holds no report (parts: {parts})")]
    NoReportInEmail { location: String, parts: String },
    #[error("{location}: holds no report")]
    NoReport { location: String },
    #[error("{location}: the archive holds no report")]
    NoReportInArchive { location: String },
    #[error("{location}: exceeds the {limit} limit of {max} ({detail})")]
    Limit {
        location: String,
        limit: LimitKind,
        max: u64,
        detail: String,
    },
    #[error("{location}: corrupt or truncated {format} data: {message}")]
    Corrupt {
        location: String,
        format: &'static str,
        message: String,
    },
    #[error(
        "{location}: zip member {member:?} has an unsafe name (absolute or with '..'); refused"
    )]
    UnsafeMemberName { location: String, member: String },
    #[error("{location}: zip member {member:?} is encrypted")]
    EncryptedMember { location: String, member: String },
    #[error("{location}: reading failed: {source}")]
    Io {
        location: String,
        #[source]
        source: std::io::Error,
    },
}

/// Walks every report payload in `input`, calling `sink` for each, and
/// returns how many were found. An input holding no report is an error.
///
/// If the sink fails because a decompressor under it failed or crossed a
/// limit, the decode error is returned instead of the sink's (it says more).
pub fn visit_payloads<E: From<DecodeError>>(
    input: &mut dyn Read,
    name: &str,
    limits: &Limits,
    sink: &mut dyn FnMut(Payload<'_>) -> Result<(), E>,
) -> Result<usize, E> {
    let mut visitor = Visitor {
        limits,
        sink,
        found: 0,
        email_domain: None,
    };
    visitor.visit(input, name.to_string(), 0, Origin::TopLevel)?;
    if visitor.found == 0 {
        return Err(DecodeError::NoReport {
            location: name.to_string(),
        }
        .into());
    }
    Ok(visitor.found)
}

/// Where a stream came from, which decides how strictly it is recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The input itself: anything unrecognised is an error.
    TopLevel,
    /// An archive member: non-report members are skipped.
    ArchiveMember,
    /// An email part: human-readable text and HTML parts are skipped.
    EmailPart,
}

struct Visitor<'l, 's, E> {
    limits: &'l Limits,
    sink: &'s mut dyn FnMut(Payload<'_>) -> Result<(), E>,
    found: usize,
    /// The domain the email being walked was sent for, if it says.
    email_domain: Option<String>,
}

impl<E: From<DecodeError>> Visitor<'_, '_, E> {
    fn visit(
        &mut self,
        input: &mut dyn Read,
        location: String,
        depth: u32,
        origin: Origin,
    ) -> Result<(), E> {
        let prefix = read_prefix(input, SNIFF_BYTES).map_err(|source| DecodeError::Io {
            location: location.clone(),
            source,
        })?;
        let kind = sniff(&prefix);
        let is_container = matches!(
            kind,
            Sniffed::Gzip | Sniffed::Zip | Sniffed::Zlib | Sniffed::Email
        );
        if is_container && depth >= self.limits.max_nesting_depth {
            return Err(DecodeError::Limit {
                location,
                limit: LimitKind::NestingDepth,
                max: u64::from(self.limits.max_nesting_depth),
                detail: "containers nested inside each other".to_string(),
            }
            .into());
        }
        let mut stream = Cursor::new(prefix).chain(input);
        match kind {
            Sniffed::Gzip | Sniffed::Zlib => {
                let format = if kind == Sniffed::Gzip {
                    "gzip"
                } else {
                    "zlib"
                };
                let mut decompressed = archive::Decompressed::new(
                    BufReader::new(&mut stream),
                    kind == Sniffed::Gzip,
                    self.limits,
                    location.clone(),
                    format,
                );
                // What a gzip holds is judged as the gzip itself would be: a
                // top-level .gz holding no report is an error.
                let result = self.visit(&mut decompressed, location.clone(), depth + 1, origin);
                decompressed.prefer_own_error(result)
            }
            Sniffed::Zip => {
                let bytes = read_bounded(&mut stream, self.limits.max_container_bytes, &location)?;
                let before = self.found;
                archive::visit_zip(self, bytes, &location, depth)?;
                if self.found == before {
                    return Err(DecodeError::NoReportInArchive { location }.into());
                }
                Ok(())
            }
            Sniffed::Email => {
                let bytes = read_bounded(&mut stream, self.limits.max_container_bytes, &location)?;
                mime::visit_email(self, &bytes, &location, depth)
            }
            Sniffed::Xml => {
                let head = stream.get_ref().0.get_ref();
                if origin == Origin::EmailPart && !sniff::mentions_feedback_root(head) {
                    return Ok(());
                }
                self.emit(location, PayloadFormat::AggregateXml, &mut stream)
            }
            Sniffed::Json => self.emit(location, PayloadFormat::TlsRptJson, &mut stream),
            Sniffed::Empty if origin == Origin::TopLevel => {
                Err(DecodeError::Empty { location }.into())
            }
            Sniffed::Unknown if origin == Origin::TopLevel => {
                let head = stream.get_ref().0.get_ref();
                let preview = String::from_utf8_lossy(&head[..head.len().min(40)]).into_owned();
                Err(DecodeError::Unrecognised { location, preview }.into())
            }
            Sniffed::Empty | Sniffed::Unknown => Ok(()),
        }
    }

    fn emit(
        &mut self,
        location: String,
        format: PayloadFormat,
        stream: &mut dyn Read,
    ) -> Result<(), E> {
        let mut reader = BufReader::with_capacity(64 * 1024, stream);
        self.found += 1;
        let domain_hint = self
            .email_domain
            .clone()
            .or_else(|| hint::domain_from_file_name(&location));
        (self.sink)(Payload {
            location,
            format,
            domain_hint,
            reader: &mut reader,
        })
    }
}

/// Reads up to `len` bytes (fewer only at the end of the stream).
fn read_prefix(input: &mut dyn Read, len: usize) -> std::io::Result<Vec<u8>> {
    let mut prefix = Vec::with_capacity(len);
    input.take(len as u64).read_to_end(&mut prefix)?;
    Ok(prefix)
}

/// Reads a whole container into memory, refusing one larger than `max`.
fn read_bounded(input: &mut dyn Read, max: u64, location: &str) -> Result<Vec<u8>, DecodeError> {
    let mut bytes = Vec::new();
    input
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| DecodeError::Io {
            location: location.to_string(),
            source,
        })?;
    if bytes.len() as u64 > max {
        return Err(DecodeError::Limit {
            location: location.to_string(),
            limit: LimitKind::ContainerBytes,
            max,
            detail: "an email or zip must be read whole to be opened".to_string(),
        });
    }
    Ok(bytes)
}

/// Joins an outer location and a member name with a visible separator.
/// Member names come from the archive or the email (a zip header, an
/// RFC 2231 file name can carry `%00`): control characters are left out,
/// since the location is stored as text and shown.
fn member_location(outer: &str, member: &str) -> String {
    match crate::report::strip_controls(member) {
        Some(clean) => format!("{outer} › {clean}"),
        None => format!("{outer} › {member}"),
    }
}
