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
/// A byte test: cheap enough to run on every value of every record.
pub(crate) fn has_controls(text: &str) -> bool {
    text.bytes()
        .any(|byte| byte < b' ' && !matches!(byte, b'\t' | b'\n' | b'\r'))
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
    }
}
