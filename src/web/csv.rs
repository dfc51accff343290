//! Streamed CSV: rows are written as the database produces them, so an
//! export of millions of rows holds a few hundred in memory.

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::query::RowStream;

/// Rows per chunk sent to the client.
const ROWS_PER_CHUNK: usize = 256;

/// One RFC 4180 field. Cells a spreadsheet would run as a formula get a
/// leading apostrophe (CSV injection).
pub fn field(value: &str, out: &mut String) {
    let formula = value.starts_with(['=', '+', '@', '\t', '\r'])
        || (value.starts_with('-') && value.parse::<f64>().is_err());
    let quoted = formula || value.contains([',', '"', '\n', '\r']);
    if quoted {
        out.push('"');
        if formula {
            out.push('\'');
        }
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

pub fn line(fields: &[String], out: &mut String) {
    for (index, value) in fields.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        field(value, out);
    }
    out.push_str("\r\n");
}

pub fn csv_response<T: Send + 'static>(
    filename: &str,
    header_row: &'static [&'static str],
    rows: RowStream<T>,
    fields: fn(&T) -> Vec<String>,
) -> Response {
    let mut head = String::new();
    line(
        &header_row.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        &mut head,
    );
    let stream =
        futures_util::stream::unfold((Some(head), rows), move |(head, mut rows)| async move {
            if let Some(head) = head {
                return Some((Ok::<Bytes, std::io::Error>(Bytes::from(head)), (None, rows)));
            }
            let mut chunk = String::new();
            for _ in 0..ROWS_PER_CHUNK {
                match rows.next().await {
                    Some(Ok(row)) => line(&fields(&row), &mut chunk),
                    Some(Err(error)) => {
                        // Headers are gone: cutting the body short is the only
                        // way left to tell the client the export is incomplete.
                        tracing::error!(%error, "CSV export failed midway");
                        return Some((Err(std::io::Error::other(error.to_string())), (None, rows)));
                    }
                    None => break,
                }
            }
            if chunk.is_empty() {
                None
            } else {
                Some((Ok(Bytes::from(chunk)), (None, rows)))
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        let mut out = String::new();
        line(
            &[
                "plain".into(),
                "a,b".into(),
                "say \"hi\"".into(),
                "=cmd()".into(),
                "-1".into(),
            ],
            &mut out,
        );
        assert_eq!(out, "plain,\"a,b\",\"say \"\"hi\"\"\",\"'=cmd()\",-1\r\n");
    }
}
