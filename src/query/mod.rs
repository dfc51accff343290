//! The read side: what the dashboard pages and the REST API show, as typed
//! rows. Both call these functions with the same `Filter`, so a page and
//! the matching API call always agree.

pub mod aggregate;
pub mod filter;
pub mod other;
pub mod plan;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use aggregate::{GroupBy, RecordRow, ReportRow, SummaryRow, SummarySort};
pub use filter::{Filter, FilterError, ParsedFilter, SourceMatch};

use crate::store::{Arg, Cell, Dialect, Sql, StoreError, StoreResult};

/// The sum of a bigint expression as a bigint, 0 over no rows. PostgreSQL
/// uses `dmarcd_sum` (migration 7): its own `sum(bigint)` goes through
/// numeric, which costs more than the rest of a large summary.
fn sum(dialect: Dialect, expression: &str) -> String {
    match dialect {
        Dialect::Postgres => format!("coalesce(dmarcd_sum({expression}), 0)"),
        Dialect::Sqlite => format!("coalesce(sum({expression}), 0)"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A parameter the user can fix.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<FilterError> for QueryError {
    fn from(error: FilterError) -> Self {
        QueryError::Invalid(error.to_string())
    }
}

/// Limit and offset, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

/// The largest page a JSON list returns (CSV exports stream everything).
pub const MAX_PAGE: i64 = 1000;

impl Page {
    pub fn new(limit: Option<i64>, offset: Option<i64>, default: i64) -> Result<Self, QueryError> {
        let limit = limit.unwrap_or(default);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(QueryError::Invalid(format!("limit: must be 1–{MAX_PAGE}")));
        }
        let offset = offset.unwrap_or(0);
        if offset < 0 {
            return Err(QueryError::Invalid("offset: must be 0 or more".into()));
        }
        Ok(Page { limit, offset })
    }

    fn push_limit(&self, sql: &mut Sql) {
        sql.push(" LIMIT ")
            .bind(Arg::Int(self.limit))
            .push(" OFFSET ")
            .bind(Arg::Int(self.offset));
    }
}

/// Paging parameters as they arrive in a query string.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Rows per page (1–1000, default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// Rows to skip.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub offset: Option<String>,
}

impl PageParams {
    /// Checked paging, with errors that name the parameter.
    pub fn page(&self, default: i64) -> Result<Page, QueryError> {
        let number = |name: &str, value: &Option<String>| -> Result<Option<i64>, QueryError> {
            match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(text) => text.parse().map(Some).map_err(|_| {
                    QueryError::Invalid(format!("{name}: {text:?} is not a whole number"))
                }),
            }
        };
        Page::new(
            number("limit", &self.limit)?,
            number("offset", &self.offset)?,
            default,
        )
    }
}

/// Appends `inner` (SQL with its arguments) to `outer`, which must have
/// no arguments yet (PostgreSQL placeholders are numbered from 1).
pub(crate) fn append(outer: &mut Sql, inner: &Sql) {
    outer.append_sql(inner);
}

/// SQLite keeps times as text in sqlx's format; PostgreSQL's come back as
/// RFC 3339 already. Both leave here as `2024-03-30T00:00:00Z`.
pub fn normalize_time(text: Option<String>) -> String {
    let Some(text) = text else {
        return String::new();
    };
    let parsed = chrono::DateTime::parse_from_rfc3339(&text)
        .or_else(|_| chrono::DateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f%:z"));
    match parsed {
        Ok(time) => time
            .with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        Err(_) => text,
    }
}

/// Rows arriving from a streamed query, already typed.
pub struct RowStream<T> {
    receiver: mpsc::Receiver<StoreResult<Vec<Cell>>>,
    convert: fn(Vec<Cell>) -> T,
}

impl<T> RowStream<T> {
    pub(crate) fn new(
        receiver: mpsc::Receiver<StoreResult<Vec<Cell>>>,
        convert: fn(Vec<Cell>) -> T,
    ) -> Self {
        RowStream { receiver, convert }
    }

    /// The next row; `None` at the end.
    pub async fn next(&mut self) -> Option<StoreResult<T>> {
        let cells = self.receiver.recv().await?;
        Some(cells.map(self.convert))
    }
}
