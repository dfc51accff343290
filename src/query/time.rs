//! Times as the API and the pages show them: `2024-03-30T00:00:00Z`.
//!
//! A time column decodes as `DateTime<Utc>` on both backends (PostgreSQL's
//! `timestamptz`, SQLite's RFC 3339 text); the rows keep the text form
//! their JSON and templates use, through `#[sqlx(try_from = "Timestamp")]`.

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::{Database, Decode, Type};

/// A time column (never NULL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub DateTime<Utc>);

/// A time column that may be NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaybeTimestamp(pub Option<DateTime<Utc>>);

/// The text form of a time.
pub fn time_text(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl From<Timestamp> for String {
    fn from(time: Timestamp) -> Self {
        time_text(time.0)
    }
}

impl From<MaybeTimestamp> for Option<String> {
    fn from(time: MaybeTimestamp) -> Self {
        time.0.map(time_text)
    }
}

impl<DB: Database> Type<DB> for Timestamp
where
    DateTime<Utc>: Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <DateTime<Utc> as Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <DateTime<Utc> as Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: Database> Decode<'r, DB> for Timestamp
where
    DateTime<Utc>: Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(Timestamp(<DateTime<Utc> as Decode<'r, DB>>::decode(value)?))
    }
}

impl<DB: Database> Type<DB> for MaybeTimestamp
where
    DateTime<Utc>: Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <DateTime<Utc> as Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <DateTime<Utc> as Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: Database> Decode<'r, DB> for MaybeTimestamp
where
    Option<DateTime<Utc>>: Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(MaybeTimestamp(
            <Option<DateTime<Utc>> as Decode<'r, DB>>::decode(value)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_seconds_with_a_z() {
        let time = DateTime::parse_from_rfc3339("2024-03-30T02:00:00.250+02:00")
            .unwrap()
            .to_utc();
        assert_eq!(String::from(Timestamp(time)), "2024-03-30T00:00:00Z");
        assert_eq!(Option::<String>::from(MaybeTimestamp(None)), None);
    }
}
