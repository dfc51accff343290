//! Closed sets of protocol keywords (dispositions, results, …) that keep an
//! unknown value as its raw text instead of mapping it to a default.

/// Declares an enum of protocol keywords. Parsing trims and lower-cases the
/// input (real reports send `Pass`, ` none `); a value outside the set becomes
/// `Unknown(raw)` with the raw, trimmed text, so nothing is silently rewritten.
macro_rules! keyword_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
            /// A value outside the known set, kept as received (trimmed).
            Unknown(String),
        }

        impl $name {
            /// Parses a keyword leniently: trims and case-folds; unknown values are kept.
            pub fn parse(raw: &str) -> Self {
                let trimmed = raw.trim();
                // Compared without allocating: this runs for every record.
                $(if trimmed.eq_ignore_ascii_case($text) {
                    return $name::$variant;
                })+
                $name::Unknown(trimmed.to_string())
            }

            /// The canonical text of a known value, or the raw text of an unknown one.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Unknown(raw) => raw.as_str(),
                }
            }

            /// True when the value is outside the known set.
            pub fn is_unknown(&self) -> bool {
                matches!(self, $name::Unknown(_))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

pub(crate) use keyword_enum;
