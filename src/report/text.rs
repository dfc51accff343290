//! Text hygiene shared by the parsers.

/// C0 control characters other than tab, line feed and carriage return.
/// PostgreSQL refuses NUL in text ("invalid byte sequence for encoding
/// UTF8: 0x00"), SQLite cuts a string short at it, and none of them means
/// anything in a report value; tab and line breaks can (a comment, a
/// human-readable result), so they stay.
fn is_stripped_control(character: char) -> bool {
    character < ' ' && !matches!(character, '\t' | '\n' | '\r')
}

/// Whether `text` holds a control character that `strip_controls` removes.
pub(crate) fn has_controls(text: &str) -> bool {
    has_control_bytes(text.as_bytes())
}

/// The same test over raw bytes, written without branches so that it
/// vectorises: the aggregate parser runs it over each window of a document
/// (80 million instructions for 84 MB), and tests values only once it
/// found one, instead of testing each of millions of values (90 million).
/// UTF-8 continuation bytes are above 0x7F and never match.
pub(crate) fn has_control_bytes(bytes: &[u8]) -> bool {
    bytes.chunks(4096).any(|chunk| {
        chunk.iter().fold(false, |found, &byte| {
            found | ((byte < b' ') & (byte != b'\t') & (byte != b'\n') & (byte != b'\r'))
        })
    })
}

/// `text` without its control characters, or `None` when it has none.
pub(crate) fn strip_controls(text: &str) -> Option<String> {
    has_controls(text).then(|| text.chars().filter(|&c| !is_stripped_control(c)).collect())
}

/// Removes control characters in place; true when there were any.
pub(crate) fn strip_controls_in_place(text: &mut String) -> bool {
    match strip_controls(text) {
        Some(cleaned) => {
            *text = cleaned;
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_nul_and_other_c0_but_keeps_tab_and_line_breaks() {
        assert_eq!(
            strip_controls("a\0b\u{1}c\td\ne\rf\u{1f}").as_deref(),
            Some("abc\td\ne\rf")
        );
        assert_eq!(strip_controls("plain, é and \u{7f}"), None);
        for at in 0..20 {
            let mut text = "x".repeat(20);
            text.insert(at, '\u{1f}');
            assert!(has_controls(&text), "{at}");
            text.replace_range(at..at + 1, "\t");
            assert!(!has_controls(&text), "{at}");
        }
    }
}
