//! What a stream of bytes is, judged by its first bytes rather than by its
//! file name or MIME type (senders mislabel: Amazon SES sends gzip as
//! `application/octet-stream`, Google zips as `application/zip` whatever the
//! name says).

/// Bytes looked at to decide; enough to get past an XML declaration and
/// comments to the root element of any real report.
pub(crate) const SNIFF_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sniffed {
    Empty,
    Gzip,
    Zip,
    Zlib,
    Xml,
    Json,
    Email,
    Unknown,
}

pub(crate) fn sniff(prefix: &[u8]) -> Sniffed {
    if prefix.is_empty() {
        return Sniffed::Empty;
    }
    if prefix.starts_with(&[0x1f, 0x8b]) {
        return Sniffed::Gzip;
    }
    if prefix.starts_with(b"PK\x03\x04") || prefix.starts_with(b"PK\x05\x06") {
        return Sniffed::Zip;
    }
    if is_zlib_header(prefix) {
        return Sniffed::Zlib;
    }
    if is_wide_xml(prefix) {
        return Sniffed::Xml;
    }
    let text = skip_bom_and_whitespace(prefix);
    match text.first() {
        None => Sniffed::Empty,
        Some(b'<') => Sniffed::Xml,
        Some(b'{') => Sniffed::Json,
        Some(_) if looks_like_email(text) => Sniffed::Email,
        Some(_) => Sniffed::Unknown,
    }
}

/// RFC 1950: CMF says deflate with a window ≤ 32 KiB, and CMF·256+FLG is a
/// multiple of 31.
fn is_zlib_header(prefix: &[u8]) -> bool {
    match prefix {
        [cmf, flg, ..] => {
            cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(*cmf) * 256 + u16::from(*flg)) % 31 == 0
        }
        _ => false,
    }
}

pub(crate) fn skip_bom_and_whitespace(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let start = bytes
        .iter()
        .position(|byte| !byte.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// XML in UTF-16 or UTF-32: a byte order mark, or `<` with zero bytes
/// beside it. The aggregate parser decodes it (or names its encoding).
fn is_wide_xml(prefix: &[u8]) -> bool {
    let marks: [&[u8]; 5] = [
        b"\xFF\xFE",
        b"\xFE\xFF",
        b"\0\0\xFE\xFF",
        b"<\0\0\0",
        b"\0\0\0<",
    ];
    marks.iter().any(|mark| prefix.starts_with(mark))
        || prefix.starts_with(b"<\0") && prefix.get(3) == Some(&0)
        || prefix.starts_with(b"\0<") && prefix.get(2) == Some(&0)
}

/// Whether wide (UTF-16) text holds `word`, in either byte order.
fn wide_contains(prefix: &[u8], word: &[u8]) -> bool {
    let little: Vec<u8> = word.iter().flat_map(|&byte| [byte, 0]).collect();
    let big: Vec<u8> = word.iter().flat_map(|&byte| [0, byte]).collect();
    memchr::memmem::find(prefix, &little).is_some() || memchr::memmem::find(prefix, &big).is_some()
}

/// A header field (`Name: value`) on the first line, or an mbox `From ` line.
fn looks_like_email(text: &[u8]) -> bool {
    if text.starts_with(b"From ") {
        return true;
    }
    let line_end = text.iter().position(|&b| b == b'\n').unwrap_or(text.len());
    let line = &text[..line_end];
    match line.iter().position(|&b| b == b':') {
        Some(colon) if colon > 0 => line[..colon]
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b':'),
        _ => false,
    }
}

/// Whether an XML prefix is plausibly an aggregate report (used for email
/// parts, where an HTML body must not be mistaken for a report).
pub(crate) fn mentions_feedback_root(prefix: &[u8]) -> bool {
    prefix.windows(9).any(|window| window == b"<feedback")
        || prefix.windows(9).any(|window| window == b":feedback")
        || is_wide_xml(prefix) && wide_contains(prefix, b"feedback")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_each_container_by_magic_bytes() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Sniffed::Gzip);
        assert_eq!(sniff(b"PK\x03\x04rest"), Sniffed::Zip);
        assert_eq!(sniff(&[0x78, 0x9c, 1, 2]), Sniffed::Zlib);
        assert_eq!(sniff(b"\xEF\xBB\xBF  <?xml version"), Sniffed::Xml);
        assert_eq!(sniff(b"\n {\"a\":1}"), Sniffed::Json);
        assert_eq!(sniff(b"Return-Path: <a@b>\r\n"), Sniffed::Email);
        assert_eq!(sniff(b"  \n\t"), Sniffed::Empty);
        assert_eq!(sniff(b""), Sniffed::Empty);
        assert_eq!(sniff(b"hello world"), Sniffed::Unknown);
        assert_eq!(sniff(b"\xFF\xFE<\0?\0x\0"), Sniffed::Xml);
        assert_eq!(sniff(b"\0<\0?\0x"), Sniffed::Xml);
        assert_eq!(sniff(b"\xFF\xFE\0\0<\0\0\0"), Sniffed::Xml);
    }
}
