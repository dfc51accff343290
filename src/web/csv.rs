//! Streamed CSV exports: rows are written by the `csv` crate through their
//! `Serialize` (the JSON shape, field by field, the header from the field
//! names) as the database produces them, so an export of millions of rows
//! holds a few hundred in memory.

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::ser::{self, Serialize, Serializer};

use crate::query::RowStream;

/// Rows per chunk sent to the client.
const ROWS_PER_CHUNK: usize = 256;

/// A CSV export of `rows`. `T::default()` gives the header when there are
/// no rows (serde knows the field names only from a value).
pub fn csv_response<T>(filename: &str, rows: RowStream<T>) -> Response
where
    T: Serialize + Default + Send + 'static,
{
    let stream = futures_util::stream::unfold((true, rows), |(first, mut rows)| async move {
        let mut writer = writer(first);
        let mut written = 0;
        while written < ROWS_PER_CHUNK {
            match rows.next().await {
                Some(Ok(row)) => {
                    if let Err(error) = writer.serialize(Defused(&row)) {
                        return Some((Err(cut_short(error)), (false, rows)));
                    }
                    written += 1;
                }
                // Headers are gone: cutting the body short is the only
                // way left to tell the client the export is incomplete.
                Some(Err(error)) => return Some((Err(cut_short(error)), (false, rows))),
                None => break,
            }
        }
        if first && written == 0 {
            return Some((header_only::<T>().map(Bytes::from), (false, rows)));
        }
        if written == 0 {
            return None;
        }
        let chunk = writer
            .into_inner()
            .map_err(|error| cut_short(error.into_error()));
        Some((chunk.map(Bytes::from), (false, rows)))
    });
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// RFC 4180 lines (CRLF); the header row before the first record when
/// `header`.
fn writer(header: bool) -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .has_headers(header)
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new())
}

/// The header row alone, for an export without rows.
fn header_only<T: Serialize + Default>() -> Result<Vec<u8>, std::io::Error> {
    let mut writer = writer(true);
    writer.serialize(T::default()).map_err(cut_short)?;
    let mut bytes = writer
        .into_inner()
        .map_err(|error| cut_short(error.into_error()))?;
    // Field names are identifiers: the header is the first line.
    let end = bytes
        .windows(2)
        .position(|pair| pair == b"\r\n")
        .map_or(bytes.len(), |at| at + 2);
    bytes.truncate(end);
    Ok(bytes)
}

fn cut_short(error: impl std::fmt::Display) -> std::io::Error {
    tracing::error!(%error, "CSV export failed midway");
    std::io::Error::other(error.to_string())
}

/// Text a spreadsheet would run as a formula, with a leading apostrophe
/// (CSV injection): report fields are written by whoever sent the report.
fn defused(text: &str) -> Option<String> {
    let formula = text.starts_with(['=', '+', '@', '\t', '\r'])
        || (text.starts_with('-') && text.parse::<f64>().is_err());
    formula.then(|| format!("'{text}"))
}

/// A value serialized as itself, its text fields `defused`.
struct Defused<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> Serialize for Defused<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(Defusing(serializer))
    }
}

/// A serializer that hands everything to the one inside, text `defused`.
struct Defusing<S>(S);

/// Methods that hand their value on unchanged.
macro_rules! forward {
    ($($method:ident($($arg:ident: $type:ty),*) -> $result:ty;)*) => {
        $(fn $method(self, $($arg: $type),*) -> Result<$result, Self::Error> {
            self.0.$method($($arg),*)
        })*
    };
}

impl<S: Serializer> Serializer for Defusing<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = S::SerializeSeq;
    type SerializeTuple = S::SerializeTuple;
    type SerializeTupleStruct = S::SerializeTupleStruct;
    type SerializeTupleVariant = S::SerializeTupleVariant;
    type SerializeMap = S::SerializeMap;
    type SerializeStruct = Defusing<S::SerializeStruct>;
    type SerializeStructVariant = S::SerializeStructVariant;

    fn serialize_str(self, text: &str) -> Result<S::Ok, S::Error> {
        match defused(text) {
            Some(safe) => self.0.serialize_str(&safe),
            None => self.0.serialize_str(text),
        }
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Defused(value))
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        Ok(Defusing(self.0.serialize_struct(name, len)?))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &Defused(value))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &Defused(value))
    }

    forward! {
        serialize_bool(v: bool) -> S::Ok;
        serialize_i8(v: i8) -> S::Ok;
        serialize_i16(v: i16) -> S::Ok;
        serialize_i32(v: i32) -> S::Ok;
        serialize_i64(v: i64) -> S::Ok;
        serialize_u8(v: u8) -> S::Ok;
        serialize_u16(v: u16) -> S::Ok;
        serialize_u32(v: u32) -> S::Ok;
        serialize_u64(v: u64) -> S::Ok;
        serialize_f32(v: f32) -> S::Ok;
        serialize_f64(v: f64) -> S::Ok;
        serialize_char(v: char) -> S::Ok;
        serialize_bytes(v: &[u8]) -> S::Ok;
        serialize_none() -> S::Ok;
        serialize_unit() -> S::Ok;
        serialize_unit_struct(name: &'static str) -> S::Ok;
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str) -> S::Ok;
        serialize_seq(len: Option<usize>) -> S::SerializeSeq;
        serialize_tuple(len: usize) -> S::SerializeTuple;
        serialize_tuple_struct(name: &'static str, len: usize) -> S::SerializeTupleStruct;
        serialize_tuple_variant(name: &'static str, index: u32, variant: &'static str, len: usize) -> S::SerializeTupleVariant;
        serialize_map(len: Option<usize>) -> S::SerializeMap;
        serialize_struct_variant(name: &'static str, index: u32, variant: &'static str, len: usize) -> S::SerializeStructVariant;
    }
}

impl<S: ser::SerializeStruct> ser::SerializeStruct for Defusing<S> {
    type Ok = S::Ok;
    type Error = S::Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), S::Error> {
        self.0.serialize_field(key, &Defused(value))
    }

    fn end(self) -> Result<S::Ok, S::Error> {
        self.0.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Row {
        id: i64,
        name: Option<String>,
        note: String,
    }

    /// The CSV of `rows`, as the export writes it.
    async fn export(rows: Vec<Row>) -> String {
        let (sender, receiver) = tokio::sync::mpsc::channel(rows.len().max(1));
        for row in rows {
            sender.send(Ok(row)).await.unwrap();
        }
        drop(sender);
        let response = csv_response("rows.csv", RowStream::<Row>::from_receiver(receiver));
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    fn read(text: &str) -> Vec<Row> {
        csv::Reader::from_reader(text.as_bytes())
            .deserialize()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[tokio::test]
    async fn fields_with_commas_quotes_and_newlines_round_trip() {
        let rows = vec![
            Row {
                id: 1,
                name: Some("Example, Inc.".into()),
                note: "say \"hi\"\r\nand\nbye".into(),
            },
            Row {
                id: 2,
                name: None,
                note: String::new(),
            },
        ];
        let text = export(rows.clone()).await;
        assert!(text.starts_with("id,name,note\r\n"), "{text}");
        assert_eq!(read(&text), rows);
    }

    #[tokio::test]
    async fn fields_are_quoted_and_formulas_defused() {
        let row = |id, note: &str| Row {
            id,
            name: Some(note.into()),
            note: note.into(),
        };
        let text = export(vec![
            row(1, "plain"),
            row(2, "=cmd()"),
            row(3, "-1"),
            row(4, "+1 @x"),
        ])
        .await;
        let notes: Vec<String> = read(&text).into_iter().map(|row| row.note).collect();
        assert_eq!(notes, ["plain", "'=cmd()", "-1", "'+1 @x"], "{text}");
        assert!(text.contains("2,'=cmd(),'=cmd()\r\n"), "{text}");
    }

    #[tokio::test]
    async fn an_export_without_rows_is_its_header() {
        assert_eq!(export(Vec::new()).await, "id,name,note\r\n");
    }
}
