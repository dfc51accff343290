//! RFC 2047 encoded words (`=?utf-8?B?…?=`, `=?iso-8859-1?Q?…?=`) in header
//! values, decoded for people to read. Failure reports copy the failed
//! message's headers as they were sent, so a From or Subject in any
//! non-ASCII language arrives encoded.

use std::borrow::Cow;

use mail_parser::parsers::MessageStream;

/// `text` with its encoded words decoded (mail-parser's decoder, which knows
/// the charsets), anywhere in the text: also inside the quotes of a display
/// name (`"=?utf-8?B?…?=" <a@b>`), which RFC 2047 §5 forbids but senders
/// write (SharePoint's notifications do) and mail clients show decoded.
/// Whitespace between two adjacent encoded words is dropped (§6.2); a word
/// that does not decode stays as written. Control characters a word
/// decodes to (a line break in a subject) become spaces, so the value stays
/// one line.
pub fn decode_encoded_words(text: &str) -> Cow<'_, str> {
    if !text.contains("=?") {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut decoded = String::with_capacity(text.len());
    let mut rest = 0;
    let mut after_word = false;
    while let Some(found) = text[rest..].find("=?") {
        let start = rest + found;
        // The decoder starts at the `?` after the `=`, and stops after `?=`.
        let mut stream = MessageStream::new(&bytes[start + 1..]);
        match stream.decode_rfc2047() {
            Some(word) => {
                let between = &text[rest..start];
                if !(after_word && between.trim().is_empty()) {
                    decoded.push_str(between);
                }
                decoded.extend(word.chars().map(|c| if c.is_control() { ' ' } else { c }));
                rest = start + 1 + stream.offset();
                after_word = true;
            }
            None => {
                decoded.push_str(&text[rest..start + 2]);
                rest = start + 2;
                after_word = false;
            }
        }
    }
    decoded.push_str(&text[rest..]);
    Cow::Owned(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64_and_quoted_printable_words() {
        assert_eq!(
            decode_encoded_words("=?utf-8?B?SW50ZXJha3RpdmUgV2V0dGJld2VyYmVyLcOcYmVyc2ljaHQ=?="),
            "Interaktive Wettbewerber-Übersicht"
        );
        assert_eq!(
            decode_encoded_words("=?ISO-8859-1?Q?Andr=E9?= Pirard <pirard@example.be>"),
            "André Pirard <pirard@example.be>"
        );
    }

    #[test]
    fn decodes_inside_quotes_and_joins_adjacent_words() {
        assert_eq!(
            decode_encoded_words(
                "\"=?utf-8?B?SW50ZXJha3RpdmUgV2V0dGJld2VyYmVyLcOcYmVyc2ljaHQ=?=\" <sharepoint@domain.de>"
            ),
            "\"Interaktive Wettbewerber-Übersicht\" <sharepoint@domain.de>"
        );
        // RFC 2047 §8: (=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=) is "(ab)".
        assert_eq!(
            decode_encoded_words("(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)"),
            "(ab)"
        );
        assert_eq!(
            decode_encoded_words("=?ISO-8859-1?Q?a?= b =?ISO-8859-1?Q?c?="),
            "a b c"
        );
    }

    #[test]
    fn leaves_plain_and_broken_text_as_written() {
        assert!(matches!(
            decode_encoded_words("Rent Reminder"),
            Cow::Borrowed("Rent Reminder")
        ));
        assert_eq!(decode_encoded_words("a =? b"), "a =? b");
        assert_eq!(decode_encoded_words("=?utf-8?X?abc?="), "=?utf-8?X?abc?=");
        assert_eq!(decode_encoded_words("x =?"), "x =?");
        // A line break encoded in a subject stays out of the one line.
        assert_eq!(decode_encoded_words("=?utf-8?Q?a=0D=0Ab?="), "a  b");
    }
}
