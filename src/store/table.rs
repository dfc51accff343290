//! Read queries written once for both backends: SQL text built with
//! placeholders for the backend in use, arguments as plain values, and
//! result rows as plain cells. The dashboard and the API run their queries
//! through this, so the two can never disagree on what a filter means.

use chrono::{DateTime, Utc};
use sqlx::{Row, TypeInfo, ValueRef};
use tokio::sync::mpsc;

use super::db::{pg_query, sqlite_query, Db, Value};
use super::{Store, StoreError, StoreResult};

/// The SQL flavour of a backend (`db::Backend`; this name is on its way
/// out with the cells below).
pub use super::db::Backend as Dialect;
pub use super::db::Sql;

/// A bound value.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Text(String),
    Int(i64),
    Time(DateTime<Utc>),
}

impl From<Arg> for Value {
    fn from(arg: Arg) -> Self {
        match arg {
            Arg::Text(text) => Value::Text(Some(text)),
            Arg::Int(value) => Value::Int(Some(value)),
            Arg::Time(time) => Value::Time(Some(time)),
        }
    }
}

/// A result value. Queries cast what they select to text, integers,
/// floats or booleans; timestamps come back as RFC 3339 text.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
}

impl Cell {
    pub fn int(&self) -> i64 {
        match self {
            Cell::Int(value) => *value,
            Cell::Float(value) => *value as i64,
            Cell::Bool(value) => i64::from(*value),
            Cell::Text(text) => text.parse().unwrap_or(0),
            Cell::Null => 0,
        }
    }

    pub fn opt_int(&self) -> Option<i64> {
        match self {
            Cell::Null => None,
            other => Some(other.int()),
        }
    }

    pub fn text(&self) -> Option<String> {
        match self {
            Cell::Null => None,
            Cell::Text(text) => Some(text.clone()),
            Cell::Int(value) => Some(value.to_string()),
            Cell::Float(value) => Some(value.to_string()),
            Cell::Bool(value) => Some(value.to_string()),
        }
    }

    pub fn bool(&self) -> bool {
        match self {
            Cell::Bool(value) => *value,
            Cell::Int(value) => *value != 0,
            Cell::Text(text) => text == "t" || text == "true" || text == "1",
            _ => false,
        }
    }
}

impl Store {
    pub fn dialect(&self) -> Dialect {
        self.db().backend()
    }

    pub fn sql(&self) -> Sql {
        self.db().sql()
    }

    /// Runs a read query; every row as cells.
    pub async fn fetch_table(&self, sql: Sql) -> StoreResult<Vec<Vec<Cell>>> {
        match self.db() {
            Db::Postgres(pool) => {
                let rows = pg_query(&sql).fetch_all(pool).await?;
                rows.iter().map(pg_row).collect()
            }
            Db::Sqlite { durable, .. } => {
                let rows = sqlite_query(&sql).fetch_all(durable).await?;
                rows.iter().map(sqlite_row).collect()
            }
        }
    }

    /// Runs a write statement; returns the rows affected.
    pub async fn execute_sql(&self, sql: Sql) -> StoreResult<u64> {
        self.db().execute(&sql).await
    }

    /// Streams a read query's rows into a channel of `capacity` rows, so a
    /// million-row export holds only a few rows in memory. The task ends
    /// when the rows do or the receiver is dropped.
    pub fn stream_table(
        &self,
        sql: Sql,
        capacity: usize,
    ) -> mpsc::Receiver<StoreResult<Vec<Cell>>> {
        use futures_util::StreamExt;
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let db = self.db().clone();
        tokio::spawn(async move {
            macro_rules! forward {
                ($rows:expr, $decode:expr) => {{
                    let mut rows = $rows;
                    while let Some(row) = rows.next().await {
                        let item = row.map_err(StoreError::from).and_then(|row| $decode(&row));
                        let failed = item.is_err();
                        if sender.send(item).await.is_err() || failed {
                            return;
                        }
                    }
                }};
            }
            match &db {
                Db::Postgres(pool) => forward!(pg_query(&sql).fetch(pool), pg_row),
                Db::Sqlite { durable, .. } => {
                    forward!(sqlite_query(&sql).fetch(durable), sqlite_row)
                }
            }
        });
        receiver
    }
}

fn pg_row(row: &sqlx::postgres::PgRow) -> StoreResult<Vec<Cell>> {
    let mut cells = Vec::with_capacity(row.columns().len());
    for index in 0..row.columns().len() {
        let raw = row.try_get_raw(index)?;
        if raw.is_null() {
            cells.push(Cell::Null);
            continue;
        }
        let kind = raw.type_info().name().to_string();
        cells.push(match kind.as_str() {
            "INT8" => Cell::Int(row.try_get::<i64, _>(index)?),
            "INT4" => Cell::Int(i64::from(row.try_get::<i32, _>(index)?)),
            "INT2" => Cell::Int(i64::from(row.try_get::<i16, _>(index)?)),
            "FLOAT8" => Cell::Float(row.try_get::<f64, _>(index)?),
            "FLOAT4" => Cell::Float(f64::from(row.try_get::<f32, _>(index)?)),
            "BOOL" => Cell::Bool(row.try_get::<bool, _>(index)?),
            "TIMESTAMPTZ" => Cell::Text(
                row.try_get::<DateTime<Utc>, _>(index)?
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
            _ => Cell::Text(row.try_get::<String, _>(index)?),
        });
    }
    Ok(cells)
}

fn sqlite_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<Vec<Cell>> {
    let mut cells = Vec::with_capacity(row.columns().len());
    for index in 0..row.columns().len() {
        let raw = row.try_get_raw(index)?;
        if raw.is_null() {
            cells.push(Cell::Null);
            continue;
        }
        let kind = raw.type_info().name().to_string();
        cells.push(match kind.as_str() {
            "INTEGER" | "BOOLEAN" => Cell::Int(row.try_get::<i64, _>(index)?),
            "REAL" => Cell::Float(row.try_get::<f64, _>(index)?),
            _ => Cell::Text(row.try_get::<String, _>(index)?),
        });
    }
    Ok(cells)
}
