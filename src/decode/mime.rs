//! Emails: walk every MIME part and pick the report parts by content.
//!
//! No MIME structure is required of report senders (RFC 7489 §7.2.1.1), so
//! every leaf part is sniffed: `multipart/report` (TLS-RPT, ARF),
//! `multipart/mixed` with the attachment before or after the text (Google,
//! Microsoft), and single-part messages whose body is the attachment
//! (Mimecast, Google). mail-parser handles folded and lower-case headers,
//! LF or CRLF, RFC 2231 `name*0`/`name*1` filenames and base64 on one line
//! of any length (Microsoft).

use std::borrow::Cow;

use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders, PartType};

use super::{hint, member_location, DecodeError, Origin, PayloadFormat, Visitor};
use crate::report::failure;

pub(super) fn visit_email<E: From<DecodeError>>(
    visitor: &mut Visitor<'_, '_, E>,
    raw: &[u8],
    location: &str,
    depth: u32,
) -> Result<(), E> {
    let normalised = normalise_line_endings(raw);
    let raw = normalised.as_deref().unwrap_or(raw);
    let Some(message) = MessageParser::default().parse(raw) else {
        return Err(DecodeError::NoReportInEmail {
            location: location.to_string(),
            parts: "no header fields".to_string(),
        }
        .into());
    };
    // A failure report is the whole message (its ARF part and the copy of
    // the original), so it is handed on as one payload.
    if failure::is_failure_report(&message) {
        return visitor.emit(
            location.to_string(),
            PayloadFormat::FailureEmail,
            &mut &raw[..],
        );
    }
    let before = visitor.found;
    let domain =
        hint::domain_from_headers(message.header_raw("TLS-Report-Domain"), message.subject());
    let outer_domain = std::mem::replace(&mut visitor.email_domain, domain);
    let visited = visit_parts(visitor, &message, location, depth);
    visitor.email_domain = outer_domain;
    visited?;
    if visitor.found == before {
        return Err(DecodeError::NoReportInEmail {
            location: location.to_string(),
            parts: describe_parts(&message),
        }
        .into());
    }
    Ok(())
}

fn visit_parts<E: From<DecodeError>>(
    visitor: &mut Visitor<'_, '_, E>,
    message: &Message<'_>,
    location: &str,
    depth: u32,
) -> Result<(), E> {
    for (index, part) in message.parts.iter().enumerate() {
        let contents: Cow<'_, [u8]> = match &part.body {
            PartType::Multipart(_) => continue,
            // A forwarded report: look inside the attached message.
            PartType::Message(inner) => {
                let inner_location = member_location(location, &part_label(part, index));
                visit_parts(visitor, inner, &inner_location, depth + 1)?;
                continue;
            }
            PartType::Text(text) | PartType::Html(text) => match base64_body(message, part) {
                Some(bytes) => Cow::Owned(bytes),
                None => Cow::Borrowed(text.as_bytes()),
            },
            PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
                match unpadded_base64_body(message, part) {
                    Some(decoded) => Cow::Owned(decoded),
                    None => Cow::Borrowed(&bytes[..]),
                }
            }
        };
        if contents.is_empty() {
            continue;
        }
        let part_location = member_location(location, &part_label(part, index));
        visitor.visit(
            &mut &contents[..],
            part_location,
            depth + 1,
            Origin::EmailPart,
        )?;
    }
    Ok(())
}

/// The bytes of a base64 `text/*` part, undecoded by charset. mail-parser
/// turns text parts into strings, which would mangle a gzip or zip that a
/// sender labelled `text/plain`.
fn base64_body(message: &Message<'_>, part: &MessagePart<'_>) -> Option<Vec<u8>> {
    decode_base64(&base64_characters(message, part)?)
}

/// The bytes of a base64 binary part that lacks its `=` padding, which
/// mail-parser decodes short (it drops the last partial group, the end of
/// a gzip stream). `None` for a correctly padded part: mail-parser's bytes
/// are right and nothing is decoded twice.
fn unpadded_base64_body(message: &Message<'_>, part: &MessagePart<'_>) -> Option<Vec<u8>> {
    let characters = base64_characters(message, part)?;
    if characters.len() % 4 == 0 || part_body(message, part)?.contains(&b'=') {
        return None;
    }
    decode_base64(&characters)
}

/// The base64 alphabet characters of a part whose transfer encoding is
/// base64 (line breaks, padding and stray characters left out).
fn base64_characters(message: &Message<'_>, part: &MessagePart<'_>) -> Option<Vec<u8>> {
    let encoding = part.content_transfer_encoding()?;
    if !encoding.trim().eq_ignore_ascii_case("base64") {
        return None;
    }
    Some(
        part_body(message, part)?
            .iter()
            .copied()
            .filter(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/'))
            .collect(),
    )
}

/// A part's body as it is in the message, still transfer-encoded.
fn part_body<'m>(message: &'m Message<'_>, part: &MessagePart<'_>) -> Option<&'m [u8]> {
    message
        .raw_message()
        .get(part.raw_body_offset() as usize..part.raw_end_offset() as usize)
}

/// Decodes base64 with or without padding, the last partial group included.
fn decode_base64(cleaned: &[u8]) -> Option<Vec<u8>> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    base64::Engine::decode(&engine, cleaned).ok()
}

/// The attachment's file name, else its content type and position.
fn part_label(part: &MessagePart<'_>, index: usize) -> String {
    if let Some(name) = part.attachment_name() {
        return name.to_string();
    }
    format!("part {index} ({})", content_type_of(part))
}

fn content_type_of(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(content_type) => match content_type.subtype() {
            Some(subtype) => format!("{}/{subtype}", content_type.ctype()),
            None => content_type.ctype().to_string(),
        },
        None => "text/plain".to_string(),
    }
}

fn describe_parts(message: &Message<'_>) -> String {
    let types: Vec<String> = message
        .parts
        .iter()
        .map(|part| match part.attachment_name() {
            Some(name) => format!("{} {name:?}", content_type_of(part)),
            None => content_type_of(part),
        })
        .collect();
    types.join(", ")
}

/// An email whose lines end in CR alone (old Mac software, and some
/// gateways that strip LF): mail-parser needs LF, so each CR becomes CRLF.
/// `None` when the message has any LF (the usual case), which is left as it is.
fn normalise_line_endings(raw: &[u8]) -> Option<Vec<u8>> {
    if memchr::memchr(b'\n', raw).is_some() || memchr::memchr(b'\r', raw).is_none() {
        return None;
    }
    let mut normalised = Vec::with_capacity(raw.len() + raw.len() / 32);
    for &byte in raw {
        normalised.push(byte);
        if byte == b'\r' {
            normalised.push(b'\n');
        }
    }
    Some(normalised)
}
