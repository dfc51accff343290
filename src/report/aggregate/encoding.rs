//! The character encoding of an aggregate report, and a reader that turns
//! any encoding into UTF-8 before the XML parser sees it.
//!
//! Nearly every report is UTF-8 (or ASCII) and goes straight through.
//! Some reporters write UTF-16 (with a byte order mark, or without one and
//! only the declaration saying so) or declare windows-1252 or another legacy
//! encoding in `<?xml … encoding="…"?>`; those are decoded with `encoding_rs`
//! as the WHATWG Encoding Standard defines each label (so windows-1252's
//! curly quotes and € come out right, and `iso-8859-1` means windows-1252,
//! as browsers read it).

use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;

use encoding_rs::{CoderResult, Decoder, Encoding, UTF_16BE, UTF_16LE, UTF_8};

use super::parse::AggregateError;

/// How the document's bytes are to be read.
pub(super) enum Detected {
    /// UTF-8 or ASCII: parsed as it is.
    Utf8 { warning: Option<String> },
    /// Anything else: decoded to UTF-8 first.
    Decode(&'static Encoding),
}

/// Decides from the first bytes (the byte order mark, the pattern of zero
/// bytes, or the XML declaration) how to read the document.
pub(super) fn detect(head: &[u8]) -> Result<Detected, AggregateError> {
    // UTF-32 first: its little-endian mark begins with UTF-16's.
    let utf32 = [
        &[0x00, 0x00, 0xFE, 0xFF][..],
        &[0xFF, 0xFE, 0x00, 0x00],
        &[0x00, 0x00, 0x00, b'<'],
        &[b'<', 0x00, 0x00, 0x00],
    ];
    if utf32.iter().any(|mark| head.starts_with(mark)) {
        return Err(AggregateError::Encoding {
            encoding: "UTF-32".to_string(),
            problem: "is not supported (reports are UTF-8, or UTF-16 at most)".to_string(),
        });
    }
    if head.starts_with(&[0xFF, 0xFE]) {
        return Ok(Detected::Decode(UTF_16LE));
    }
    if head.starts_with(&[0xFE, 0xFF]) {
        return Ok(Detected::Decode(UTF_16BE));
    }
    if head.starts_with(b"\xEF\xBB\xBF") {
        return Ok(Detected::Utf8 { warning: None });
    }
    if let Some(encoding) = utf16_without_mark(head) {
        return Ok(Detected::Decode(encoding));
    }
    let Some(label) = declared_encoding(head) else {
        return Ok(Detected::Utf8 { warning: None });
    };
    let Some(encoding) = Encoding::for_label(label.as_bytes()) else {
        return Err(AggregateError::Encoding {
            encoding: label,
            problem: "is not an encoding dmarcd knows (WHATWG Encoding Standard labels)"
                .to_string(),
        });
    };
    if encoding == UTF_8 {
        return Ok(Detected::Utf8 { warning: None });
    }
    if encoding == UTF_16LE || encoding == UTF_16BE {
        // The declaration was read as ASCII, so the bytes are not UTF-16,
        // whatever it says.
        return Ok(Detected::Utf8 {
            warning: Some(format!(
                "the document declares encoding {label:?} but is written in ASCII-compatible bytes; read as UTF-8"
            )),
        });
    }
    if encoding.output_encoding() != encoding {
        // The "replacement" encoding: labels (ISO-2022-KR, HZ…) that the
        // standard deliberately refuses to decode.
        return Err(AggregateError::Encoding {
            encoding: label,
            problem: "cannot be decoded safely (the Encoding Standard maps it to replacement)"
                .to_string(),
        });
    }
    Ok(Detected::Decode(encoding))
}

/// UTF-16 with no byte order mark (XML 1.0 §4.3.3 then needs the
/// declaration, which starts `<?`): recognised by its zero bytes, every
/// second byte of ASCII text.
fn utf16_without_mark(head: &[u8]) -> Option<&'static Encoding> {
    let pairs: Vec<[u8; 2]> = head
        .chunks_exact(2)
        .take(32)
        .map(|pair| [pair[0], pair[1]])
        .collect();
    if pairs.len() < 2 {
        return None;
    }
    if pairs.iter().all(|pair| pair[0] != 0 && pair[1] == 0) {
        return Some(UTF_16LE);
    }
    if pairs.iter().all(|pair| pair[0] == 0 && pair[1] != 0) {
        return Some(UTF_16BE);
    }
    None
}

/// The `encoding` of `<?xml version="1.0" encoding="…"?>`, when declared.
fn declared_encoding(head: &[u8]) -> Option<String> {
    let start = head.iter().position(|byte| !byte.is_ascii_whitespace())?;
    let head = &head[start..];
    if !head.starts_with(b"<?xml") {
        return None;
    }
    let end = memchr::memmem::find(head, b"?>")?;
    let declaration = &head[..end];
    let at = memchr::memmem::find(declaration, b"encoding")?;
    let rest = &declaration[at + b"encoding".len()..];
    let rest = rest
        .trim_ascii_start()
        .strip_prefix(b"=")?
        .trim_ascii_start();
    let quote = *rest.first().filter(|quote| matches!(quote, b'"' | b'\''))?;
    let value = &rest[1..];
    let close = value.iter().position(|&byte| byte == quote)?;
    Some(String::from_utf8_lossy(&value[..close]).trim().to_string())
}

/// A reader that decodes another encoding to UTF-8 as it goes. Bytes that
/// are not valid in the encoding become U+FFFD; `replaced` tells whether
/// any did.
pub(super) struct Utf8Decoder<R> {
    input: R,
    decoder: Decoder,
    pending: Vec<u8>,
    pending_start: usize,
    pending_end: usize,
    output: Vec<u8>,
    output_start: usize,
    output_end: usize,
    input_ended: bool,
    finished: bool,
    pub(super) replaced: Rc<Cell<bool>>,
}

const CHUNK: usize = 64 * 1024;

impl<R: Read> Utf8Decoder<R> {
    pub(super) fn new(input: R, encoding: &'static Encoding) -> Self {
        Utf8Decoder {
            input,
            decoder: encoding.new_decoder_with_bom_removal(),
            pending: vec![0; CHUNK],
            pending_start: 0,
            pending_end: 0,
            // Room for the worst case of one chunk (three UTF-8 bytes per
            // input byte, as a single-byte encoding can need).
            output: vec![0; CHUNK * 3 + 16],
            output_start: 0,
            output_end: 0,
            input_ended: false,
            finished: false,
            replaced: Rc::new(Cell::new(false)),
        }
    }
}

impl<R: Read> Read for Utf8Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.output_start < self.output_end {
                let available = &self.output[self.output_start..self.output_end];
                let copied = available.len().min(buf.len());
                buf[..copied].copy_from_slice(&available[..copied]);
                self.output_start += copied;
                return Ok(copied);
            }
            if self.finished {
                return Ok(0);
            }
            if self.pending_start == self.pending_end && !self.input_ended {
                let read = self.input.read(&mut self.pending)?;
                self.pending_start = 0;
                self.pending_end = read;
                self.input_ended = read == 0;
            }
            let input = &self.pending[self.pending_start..self.pending_end];
            let (result, read, written, replaced) =
                self.decoder
                    .decode_to_utf8(input, &mut self.output, self.input_ended);
            if replaced {
                self.replaced.set(true);
            }
            self.pending_start += read;
            self.output_start = 0;
            self.output_end = written;
            if self.input_ended && result == CoderResult::InputEmpty {
                self.finished = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_declared_encoding() {
        let head = b"<?xml version=\"1.0\" encoding='Windows-1252' ?><feedback>";
        assert_eq!(declared_encoding(head).as_deref(), Some("Windows-1252"));
        assert_eq!(declared_encoding(b"<?xml version=\"1.0\"?>"), None);
        assert_eq!(declared_encoding(b"<feedback>"), None);
    }

    #[test]
    fn decodes_utf16_in_small_reads() {
        let text = "<?xml version=\"1.0\"?><a>€ “q”</a>";
        let mut bytes = vec![0xFF, 0xFE];
        for unit in text.encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        let Ok(Detected::Decode(encoding)) = detect(&bytes) else {
            panic!("UTF-16LE not detected");
        };
        let mut decoded = String::new();
        Utf8Decoder::new(&bytes[..], encoding)
            .read_to_string(&mut decoded)
            .unwrap();
        assert_eq!(decoded, text);
    }
}
