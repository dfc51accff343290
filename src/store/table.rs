//! Read queries written once for both backends: SQL text built with
//! placeholders for the backend in use, arguments as plain values, and
//! result rows as plain cells. The dashboard and the API run their queries
//! through this, so the two can never disagree on what a filter means.

use chrono::{DateTime, Utc};
use sqlx::{Row, TypeInfo, ValueRef};
use tokio::sync::mpsc;

use super::{Store, StoreError, StoreResult};

/// The SQL flavour of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

/// A bound value.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Text(String),
    Int(i64),
    Time(DateTime<Utc>),
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

/// SQL text with its arguments, placeholders numbered as they are bound.
#[derive(Debug, Clone)]
pub struct Sql {
    dialect: Dialect,
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    pub fn new(dialect: Dialect) -> Self {
        Sql {
            dialect,
            text: String::new(),
            args: Vec::new(),
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Appends SQL text (never user input: bind that).
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `arg`.
    pub fn bind(&mut self, arg: Arg) -> &mut Self {
        self.args.push(arg);
        match self.dialect {
            Dialect::Postgres => {
                self.text.push('$');
                self.text.push_str(&self.args.len().to_string());
            }
            Dialect::Sqlite => self.text.push('?'),
        }
        self
    }

    pub fn bind_text(&mut self, text: impl Into<String>) -> &mut Self {
        self.bind(Arg::Text(text.into()))
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Appends another statement's text and arguments. This one must not
    /// have arguments yet, or PostgreSQL's numbered placeholders would clash.
    pub fn append_sql(&mut self, other: &Sql) -> &mut Self {
        assert!(
            self.args.is_empty() || other.args.is_empty(),
            "append_sql: both statements have arguments"
        );
        self.text.push_str(&other.text);
        self.args.extend(other.args.iter().cloned());
        self
    }
}

impl Store {
    pub fn dialect(&self) -> Dialect {
        match self {
            Store::Postgres(_) => Dialect::Postgres,
            Store::Sqlite(_) => Dialect::Sqlite,
        }
    }

    pub fn sql(&self) -> Sql {
        Sql::new(self.dialect())
    }

    /// Whether the database answers and every migration this build knows
    /// has been applied.
    pub async fn schema_is_current(&self) -> StoreResult<bool> {
        let mut sql = self.sql();
        sql.push("SELECT max(version) FROM schema_migrations");
        let applied = self
            .fetch_table(sql)
            .await?
            .first()
            .map_or(0, |row| row[0].int());
        Ok(applied >= super::migrate::latest_version(self.dialect()))
    }

    /// The raw bytes of an inbox message, reassembled from its chunks.
    pub async fn message_raw(&self, id: i64) -> StoreResult<Option<Vec<u8>>> {
        let chunks: Vec<Vec<u8>> = match self {
            Store::Postgres(store) => {
                sqlx::query_scalar("SELECT raw FROM inbox_raw WHERE message_id = $1 ORDER BY seq")
                    .bind(id)
                    .fetch_all(&store.pool)
                    .await?
            }
            Store::Sqlite(store) => {
                sqlx::query_scalar("SELECT raw FROM inbox_raw WHERE message_id = ? ORDER BY seq")
                    .bind(id)
                    .fetch_all(&store.pool)
                    .await?
            }
        };
        if chunks.is_empty() {
            return Ok(None);
        }
        Ok(Some(chunks.concat()))
    }

    /// Runs a read query; every row as cells.
    pub async fn fetch_table(&self, sql: Sql) -> StoreResult<Vec<Vec<Cell>>> {
        match self {
            Store::Postgres(store) => {
                let rows = pg_query(&sql).fetch_all(&store.pool).await?;
                rows.iter().map(pg_row).collect()
            }
            Store::Sqlite(store) => {
                let rows = sqlite_query(&sql).fetch_all(&store.pool).await?;
                rows.iter().map(sqlite_row).collect()
            }
        }
    }

    /// Runs a write statement; returns the rows affected.
    pub async fn execute_sql(&self, sql: Sql) -> StoreResult<u64> {
        Ok(match self {
            Store::Postgres(store) => pg_query(&sql).execute(&store.pool).await?.rows_affected(),
            Store::Sqlite(store) => sqlite_query(&sql)
                .execute(&store.derived)
                .await?
                .rows_affected(),
        })
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
        let store = self.clone();
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
            match &store {
                Store::Postgres(pg) => forward!(pg_query(&sql).fetch(&pg.pool), pg_row),
                Store::Sqlite(lite) => forward!(sqlite_query(&sql).fetch(&lite.pool), sqlite_row),
            }
        });
        receiver
    }
}

fn pg_query(sql: &Sql) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.text.clone()));
    for arg in &sql.args {
        query = match arg {
            Arg::Text(text) => query.bind(text.clone()),
            Arg::Int(value) => query.bind(*value),
            Arg::Time(time) => query.bind(*time),
        };
    }
    query
}

fn sqlite_query(
    sql: &Sql,
) -> sqlx::query::Query<'static, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.text.clone()));
    for arg in &sql.args {
        query = match arg {
            Arg::Text(text) => query.bind(text.clone()),
            Arg::Int(value) => query.bind(*value),
            Arg::Time(time) => query.bind(*time),
        };
    }
    query
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
