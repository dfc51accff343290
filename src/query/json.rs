//! JSON columns (lists of results, policy lines) read as typed values:
//! the column arrives as its text (`Backend::json_text`, the same on both
//! backends) and is parsed here, through `#[sqlx(try_from = "JsonColumn")]`.
//! Text that does not parse is a decode error, never an empty list.

use serde::de::DeserializeOwned;
use sqlx::{Database, Decode, Type};

/// A JSON column's text.
pub struct JsonColumn(String);

impl<T: DeserializeOwned> TryFrom<JsonColumn> for Vec<T> {
    type Error = serde_json::Error;

    fn try_from(column: JsonColumn) -> Result<Self, Self::Error> {
        serde_json::from_str(&column.0)
    }
}

impl<DB: Database> Type<DB> for JsonColumn
where
    String: Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <String as Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: Database> Decode<'r, DB> for JsonColumn
where
    String: Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(JsonColumn(<String as Decode<'r, DB>>::decode(value)?))
    }
}
