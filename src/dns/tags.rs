//! Tag-value lists (`v=DMARC1; p=none`), the shape DMARC (RFC 7489
//! section 6.4), DKIM keys (RFC 6376 section 3.2), MTA-STS and TLS-RPT
//! TXT records and BIMI share.

/// One `tag=value` pair; tag names keep their case (DMARC's are
/// case-sensitive in practice: `v=DMARC1` must be exactly that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub name: String,
    pub value: String,
}

/// The pairs of `text` in order, or what is wrong with it. Whitespace
/// around names, values and separators is allowed; a trailing `;` too.
pub fn parse_tags(text: &str) -> Result<Vec<Tag>, String> {
    let mut tags: Vec<Tag> = Vec::new();
    for part in text.split(';') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((name, value)) = part.split_once('=') else {
            return Err(format!("\"{}\" is not tag=value", shorten(part)));
        };
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("\"{}\" is not a tag name", shorten(name)));
        }
        if tags.iter().any(|tag| tag.name == name) {
            return Err(format!("the tag {name} appears twice"));
        }
        tags.push(Tag {
            name: name.to_string(),
            value: value.trim().to_string(),
        });
    }
    Ok(tags)
}

/// The value of `name`, if present.
pub fn tag<'a>(tags: &'a [Tag], name: &str) -> Option<&'a str> {
    tags.iter()
        .find(|tag| tag.name == name)
        .map(|tag| tag.value.as_str())
}

/// At most 60 characters of `text`, for quoting it in a message.
pub fn shorten(text: &str) -> String {
    if text.chars().count() <= 60 {
        text.to_string()
    } else {
        let head: String = text.chars().take(57).collect();
        format!("{head}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_keep_order_and_tolerate_spaces() {
        let tags = parse_tags(" v=DMARC1 ;p = reject; rua=mailto:a@b.example;").unwrap();
        let names: Vec<&str> = tags.iter().map(|tag| tag.name.as_str()).collect();
        assert_eq!(names, ["v", "p", "rua"]);
        assert_eq!(tag(&tags, "p"), Some("reject"));
        assert_eq!(tag(&tags, "rua"), Some("mailto:a@b.example"));
    }

    #[test]
    fn broken_lists_say_why() {
        assert!(parse_tags("v=DMARC1; p").unwrap_err().contains("\"p\""));
        assert!(parse_tags("v=1; v=2").unwrap_err().contains("twice"));
        assert!(parse_tags("v=1; p q=2").is_err());
    }
}
