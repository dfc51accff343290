//! The read side: what the dashboard pages and the REST API show, as typed
//! rows. Both call these functions with the same `Filter`, so a page and
//! the matching API call always agree.

pub mod aggregate;
pub mod compliance;
pub mod domains;
pub mod failures;
pub mod filter;
pub mod inbox;
pub mod json;
pub mod plan;
pub mod senders;
pub mod time;
pub mod tls;

use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

pub use aggregate::{GroupBy, RecordRow, ReportRow, SummaryRow, SummarySort};
pub use filter::{Filter, FilterError, ParsedFilter, SourceMatch};

use crate::store::db::{Db, TypedRow};
use crate::store::{Sql, StoreError, StoreResult};

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A parameter the user can fix.
    #[error("{0}")]
    Invalid(String),
    /// Nothing by that name or id the caller may see (404).
    #[error("{0}")]
    NotFound(String),
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
            .bind(self.limit)
            .push(" OFFSET ")
            .bind(self.offset);
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

/// `SELECT count(*) FROM (inner)`: the rows a query would return.
async fn count_of(db: &Db, inner: &Sql) -> Result<i64, QueryError> {
    let mut count = db.sql();
    count.push("SELECT count(*) FROM (");
    count.append(inner);
    count.push(") AS counted");
    let (total,): (i64,) = db.fetch_one(&count).await?;
    Ok(total)
}

/// Rows arriving from a streamed query (CSV exports), already typed: the
/// rows `R` the database returns, as the `T` the API shows.
pub struct RowStream<T> {
    rows: Pin<Box<dyn Stream<Item = StoreResult<T>> + Send>>,
}

/// Rows a streamed query holds in memory at most.
const STREAM_ROWS: usize = 256;

impl<T: Send + 'static> RowStream<T> {
    /// Streams `sql`'s rows, decoded as `R`, as `T`s.
    pub(crate) fn new<R>(db: &Db, sql: Sql) -> Self
    where
        R: TypedRow + Into<T>,
    {
        let receiver = db.stream::<R>(sql, STREAM_ROWS);
        RowStream::from_receiver(receiver)
    }

    /// Rows arriving on a channel (`Db::stream`), converted as they come.
    pub(crate) fn from_receiver<R>(receiver: tokio::sync::mpsc::Receiver<StoreResult<R>>) -> Self
    where
        R: Into<T> + Send + 'static,
    {
        let rows = futures_util::stream::unfold(receiver, |mut receiver| async move {
            let row = receiver.recv().await?;
            Some((row.map(Into::into), receiver))
        });
        // Fused: `next` after the end keeps saying `None`.
        RowStream {
            rows: Box::pin(rows.fuse()),
        }
    }

    /// The next row; `None` at the end.
    pub async fn next(&mut self) -> Option<StoreResult<T>> {
        self.rows.next().await
    }
}
