//! The one typed path to the database, for both backends.
//!
//! A statement is SQL text written once, with `$N` placeholders (sqlx's
//! SQLite driver reads `$N` as the N-th argument, as PostgreSQL does), and
//! its arguments as typed values (`Value`); a row comes back as a struct
//! that derives `sqlx::FromRow`, decoded by column name, on either
//! backend: a NULL where a number is expected is an error, never 0.
//!
//! Where the two SQL dialects truly differ (a list passed as one
//! parameter, an address column, a sum that stays a bigint), the text comes
//! from `Backend`'s vocabulary, so that code outside `store/` never asks
//! which database it talks to.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{FromRow, PgPool, Postgres, Sqlite, SqlitePool, Transaction};
use tokio::sync::mpsc;

use super::{StoreError, StoreResult};

/// The SQL dialect in use. Private to `store/`: everything that differs
/// between the two is a method here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    /// The default: a SQLite file when no database URL is configured.
    #[default]
    Sqlite,
}

/// A column type, for rows passed as one JSON parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Int,
    Float,
    Bool,
    Time,
}

impl Backend {
    /// `coalesce(sum(expression), 0)` as a bigint. PostgreSQL uses
    /// `dmarcd_sum` (migration 7): its own `sum(bigint)` goes through
    /// numeric, which costs more than the rest of a large summary.
    pub fn sum(self, expression: &str) -> String {
        match self {
            Backend::Postgres => format!("coalesce(dmarcd_sum({expression}), 0)"),
            Backend::Sqlite => format!("coalesce(sum({expression}), 0)"),
        }
    }

    /// An address column as text (`192.0.2.1`; PostgreSQL's `inet` prints
    /// a mask unless asked for the host).
    pub fn ip_text(self, column: &str) -> String {
        match self {
            Backend::Postgres => format!("host({column})"),
            Backend::Sqlite => column.to_string(),
        }
    }

    /// A text expression (a placeholder) as an address, to compare with or
    /// store into an address column.
    pub fn inet(self, expression: &str) -> String {
        match self {
            Backend::Postgres => format!("CAST({expression} AS inet)"),
            Backend::Sqlite => expression.to_string(),
        }
    }

    /// JSON text (a placeholder) for a `jsonb` column (SQLite keeps JSON as
    /// text).
    pub fn jsonb(self, expression: &str) -> String {
        match self {
            Backend::Postgres => format!("CAST({expression} AS jsonb)"),
            Backend::Sqlite => expression.to_string(),
        }
    }

    /// A JSON array of strings (a placeholder) for a list column:
    /// PostgreSQL keeps `text[]`, SQLite the JSON text.
    pub fn text_list(self, expression: &str) -> String {
        match self {
            Backend::Postgres => {
                format!("ARRAY(SELECT json_array_elements_text(CAST({expression} AS json)))")
            }
            Backend::Sqlite => expression.to_string(),
        }
    }

    /// `column IN (the numbers of a JSON array placeholder)`.
    ///
    /// PostgreSQL gets `= ANY(ARRAY(…))`: once a prepared statement goes to
    /// its generic plan, `IN (SELECT … json_array_elements_text($1))` was
    /// planned as a scan of the whole table per call (240 ms a batch on a
    /// million records, found by the record prune), while an array is
    /// looked up through the column's index whatever its length.
    pub fn in_int_list(self, column: &str, parameter: &str) -> String {
        match self {
            Backend::Postgres => format!(
                "{column} = ANY(ARRAY(SELECT CAST(value AS int8) FROM json_array_elements_text(CAST({parameter} AS json))))"
            ),
            Backend::Sqlite => {
                format!("{column} IN (SELECT value FROM json_each({parameter}))")
            }
        }
    }

    /// `column IN (the addresses of a JSON array placeholder of IP text)`,
    /// for an address column (PostgreSQL compares them as `inet`, so its
    /// index is used).
    pub fn in_ip_list(self, column: &str, parameter: &str) -> String {
        match self {
            Backend::Postgres => format!(
                "{column} = ANY(ARRAY(SELECT CAST(value AS inet) FROM json_array_elements_text(CAST({parameter} AS json))))"
            ),
            Backend::Sqlite => {
                format!("{column} IN (SELECT value FROM json_each({parameter}))")
            }
        }
    }

    /// `column IN (the strings of a JSON array placeholder)`.
    pub fn in_text_list(self, column: &str, parameter: &str) -> String {
        match self {
            Backend::Postgres => format!(
                "{column} = ANY(ARRAY(SELECT value FROM json_array_elements_text(CAST({parameter} AS json))))"
            ),
            Backend::Sqlite => {
                format!("{column} IN (SELECT value FROM json_each({parameter}))")
            }
        }
    }

    /// A relation `AS {alias}` of the rows of a JSON array of objects (a
    /// placeholder), one column per key: a batch of rows in one parameter.
    pub fn json_rows(self, parameter: &str, alias: &str, columns: &[(&str, ColumnType)]) -> String {
        match self {
            Backend::Postgres => {
                let list = columns
                    .iter()
                    .map(|(name, kind)| {
                        let sql_type = match kind {
                            ColumnType::Text => "text",
                            ColumnType::Int => "int8",
                            ColumnType::Float => "float8",
                            ColumnType::Bool => "bool",
                            ColumnType::Time => "timestamptz",
                        };
                        format!("{name} {sql_type}")
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("json_to_recordset(CAST({parameter} AS json)) AS {alias}({list})")
            }
            Backend::Sqlite => {
                let list = columns
                    .iter()
                    .map(|(name, _)| format!("j.value ->> '{name}' AS {name}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("(SELECT {list} FROM json_each({parameter}) AS j) AS {alias}")
            }
        }
    }

    /// The larger of two integers.
    pub fn greatest(self, a: &str, b: &str) -> String {
        match self {
            Backend::Postgres => format!("GREATEST({a}, {b})"),
            Backend::Sqlite => format!("max({a}, {b})"),
        }
    }

    /// Distinct values of a text column joined with commas.
    pub fn join_distinct(self, column: &str) -> String {
        match self {
            Backend::Postgres => format!("string_agg(DISTINCT {column}, ',')"),
            Backend::Sqlite => format!("group_concat(DISTINCT {column})"),
        }
    }

    /// The UTC day (`2024-03-30`) of a time column, as text.
    pub fn day_text(self, column: &str) -> String {
        match self {
            Backend::Postgres => format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"),
            Backend::Sqlite => format!("substr({column}, 1, 10)"),
        }
    }

    /// A boolean column as a condition (SQLite keeps 0 and 1).
    pub fn is_true(self, column: &str) -> String {
        match self {
            Backend::Postgres => column.to_string(),
            Backend::Sqlite => format!("{column} = 1"),
        }
    }

    /// A boolean column as a condition that it is false.
    pub fn is_false(self, column: &str) -> String {
        match self {
            Backend::Postgres => format!("NOT {column}"),
            Backend::Sqlite => format!("{column} = 0"),
        }
    }

    /// The items of a list column joined with commas (NULL for an empty
    /// list on SQLite, as `group_concat` gives).
    pub fn list_text(self, column: &str) -> String {
        match self {
            Backend::Postgres => format!("array_to_string({column}, ',')"),
            Backend::Sqlite => format!("(SELECT group_concat(value) FROM json_each({column}))"),
        }
    }

    /// Whether a subquery may read the columns of the rows before it
    /// (`CROSS JOIN LATERAL`): SQLite has no LATERAL.
    pub fn lateral_joins(self) -> bool {
        self == Backend::Postgres
    }

    /// A JSON text column or expression as text.
    pub fn json_text(self, column: &str) -> String {
        match self {
            Backend::Postgres => format!("CAST({column} AS text)"),
            Backend::Sqlite => column.to_string(),
        }
    }

    /// A `text[]` column (PostgreSQL) or JSON list (SQLite) as a JSON array.
    pub fn list_as_json(self, column: &str) -> String {
        match self {
            Backend::Postgres => format!("CAST(to_json({column}) AS text)"),
            Backend::Sqlite => column.to_string(),
        }
    }

    /// Whether a list column holds `parameter`.
    pub fn list_contains(self, column: &str, parameter: &str) -> String {
        match self {
            Backend::Postgres => format!("{parameter} = ANY({column})"),
            Backend::Sqlite => {
                format!("EXISTS (SELECT 1 FROM json_each({column}) WHERE value = {parameter})")
            }
        }
    }

    /// Whether an address column lies in a network given as its first
    /// and last addresses (placeholders holding their text).
    pub fn ip_between(self, column: &str, first: &str, last: &str) -> String {
        match self {
            Backend::Postgres => {
                format!("{column} BETWEEN CAST({first} AS inet) AND CAST({last} AS inet)")
            }
            // SQLite stores addresses as text: the caller compares them
            // in their own, zero-padded sortable form (see query::filter).
            Backend::Sqlite => format!("{column} BETWEEN {first} AND {last}"),
        }
    }
}

/// A bound value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Float(Option<f64>),
    Bool(Option<bool>),
    Time(Option<DateTime<Utc>>),
    Bytes(Vec<u8>),
}

macro_rules! value_from {
    ($($type:ty => $variant:ident $(via $convert:expr)?),* $(,)?) => {
        $(
            impl From<$type> for Value {
                fn from(value: $type) -> Self {
                    Value::$variant(Some(value $(.pipe($convert))?))
                }
            }
            impl From<Option<$type>> for Value {
                fn from(value: Option<$type>) -> Self {
                    Value::$variant(value $(.map($convert))?)
                }
            }
        )*
    };
}

/// `value.pipe(f)` is `f(value)`: lets the conversions above read in order.
trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

value_from! {
    String => Text,
    i64 => Int,
    f64 => Float,
    bool => Bool,
    DateTime<Utc> => Time,
    i32 => Int via i64::from,
    u32 => Int via i64::from,
    IpAddr => Text via |ip: IpAddr| ip.to_string(),
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Text(Some(value.to_string()))
    }
}

impl From<Option<&str>> for Value {
    fn from(value: Option<&str>) -> Self {
        Value::Text(value.map(str::to_string))
    }
}

impl From<&String> for Value {
    fn from(value: &String) -> Self {
        Value::Text(Some(value.clone()))
    }
}

impl From<&[u8]> for Value {
    fn from(value: &[u8]) -> Self {
        Value::Bytes(value.to_vec())
    }
}

impl From<u64> for Value {
    /// Counts past i64 (never seen) are stored as its largest value.
    fn from(value: u64) -> Self {
        Value::Int(Some(i64::try_from(value).unwrap_or(i64::MAX)))
    }
}

/// JSON text of a value, for list and JSON columns and batch parameters.
pub fn json(value: &impl serde::Serialize) -> Value {
    Value::Text(Some(
        serde_json::to_string(value).unwrap_or_else(|_| "null".to_string()),
    ))
}

/// SQL text with its arguments: placeholders `$1`, `$2`, … in the order
/// they are bound.
#[derive(Debug, Clone)]
pub struct Sql {
    backend: Backend,
    text: String,
    args: Vec<Value>,
}

impl Sql {
    pub fn new(backend: Backend) -> Self {
        Sql {
            backend,
            text: String::new(),
            args: Vec::new(),
        }
    }

    /// A whole statement whose placeholders `$1 … $n` take `args` in order.
    pub fn statement(backend: Backend, text: &str, args: Vec<Value>) -> Self {
        Sql {
            backend,
            text: text.to_string(),
            args,
        }
    }

    /// The vocabulary of the backend this statement is for.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Appends SQL text (never user input: bind that).
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `value`.
    pub fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.args.push(value.into());
        self.text.push('$');
        self.text.push_str(&self.args.len().to_string());
        self
    }

    /// The next placeholder's text, with its value bound: for vocabulary
    /// that wraps a placeholder (`backend.inet(&sql.placeholder(ip))`).
    pub fn placeholder(&mut self, value: impl Into<Value>) -> String {
        self.args.push(value.into());
        format!("${}", self.args.len())
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Appends another statement's text and arguments, renumbering its
    /// placeholders after this one's.
    pub fn append(&mut self, other: &Sql) -> &mut Self {
        let offset = self.args.len();
        if offset == 0 {
            self.text.push_str(&other.text);
        } else {
            self.text.push_str(&renumber(&other.text, offset));
        }
        self.args.extend(other.args.iter().cloned());
        self
    }
}

/// `$k` → `$(k + offset)` outside quoted text.
fn renumber(text: &str, offset: usize) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.char_indices().peekable();
    let mut quoted = false;
    while let Some((_, c)) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c == '$' && !quoted && chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) {
            let mut number = String::new();
            while let Some((_, d)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
                number.push(d);
                chars.next();
            }
            let n: usize = number.parse().unwrap_or(0);
            out.push('$');
            out.push_str(&(n + offset).to_string());
            continue;
        }
        out.push(c);
    }
    out
}

/// A row type decodable from either backend (`#[derive(sqlx::FromRow)]`).
pub trait TypedRow:
    for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin + 'static
{
}
impl<T> TypedRow for T where
    T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin + 'static
{
}

pub(super) fn pg_query(sql: &Sql) -> sqlx::query::Query<'static, Postgres, PgArguments> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.text.clone()));
    for value in &sql.args {
        query = match value.clone() {
            Value::Text(v) => query.bind(v),
            Value::Int(v) => query.bind(v),
            Value::Float(v) => query.bind(v),
            Value::Bool(v) => query.bind(v),
            Value::Time(v) => query.bind(v),
            Value::Bytes(v) => query.bind(v),
        };
    }
    query
}

pub(super) fn sqlite_query(sql: &Sql) -> sqlx::query::Query<'static, Sqlite, SqliteArguments> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.text.clone()));
    for value in &sql.args {
        query = match value.clone() {
            Value::Text(v) => query.bind(v),
            Value::Int(v) => query.bind(v),
            Value::Float(v) => query.bind(v),
            Value::Bool(v) => query.bind(v),
            Value::Time(v) => query.bind(v),
            Value::Bytes(v) => query.bind(v),
        };
    }
    query
}

/// Runs one sqlx call on whichever connection `$on` is (`Pool` or `Tx`).
macro_rules! on_connection {
    ($on:expr, $sql:expr, |$query:ident, $conn:ident| $call:expr) => {
        match $on {
            Connection::Postgres($conn) => {
                let $query = pg_query($sql);
                $call
            }
            Connection::Sqlite($conn) => {
                let $query = sqlite_query($sql);
                $call
            }
        }
    };
}

/// Something statements run on: a pool or an open transaction.
pub enum Connection<'a> {
    Postgres(&'a mut sqlx::PgConnection),
    Sqlite(&'a mut sqlx::SqliteConnection),
}

impl Connection<'_> {
    pub async fn execute(&mut self, sql: &Sql) -> StoreResult<u64> {
        Ok(on_connection!(self, sql, |query, conn| query
            .execute(&mut **conn)
            .await?
            .rows_affected()))
    }

    pub async fn fetch_all<T: TypedRow>(&mut self, sql: &Sql) -> StoreResult<Vec<T>> {
        Ok(on_connection!(self, sql, |query, conn| {
            let rows = query.fetch_all(&mut **conn).await?;
            rows.iter()
                .map(|row| T::from_row(row))
                .collect::<Result<Vec<T>, sqlx::Error>>()?
        }))
    }

    pub async fn fetch_optional<T: TypedRow>(&mut self, sql: &Sql) -> StoreResult<Option<T>> {
        Ok(on_connection!(self, sql, |query, conn| {
            match query.fetch_optional(&mut **conn).await? {
                Some(row) => Some(T::from_row(&row)?),
                None => None,
            }
        }))
    }

    pub async fn fetch_one<T: TypedRow>(&mut self, sql: &Sql) -> StoreResult<T> {
        self.fetch_optional(sql)
            .await?
            .ok_or_else(|| StoreError::Query(sqlx::Error::RowNotFound))
    }
}

/// The database: either backend's pools.
#[derive(Clone)]
pub enum Db {
    Postgres(PgPool),
    /// `durable` commits with a full fsync (the inbox); `derived` writes
    /// what can be rebuilt from the inbox (synchronous = NORMAL).
    Sqlite {
        durable: SqlitePool,
        derived: SqlitePool,
    },
}

impl Db {
    pub fn backend(&self) -> Backend {
        match self {
            Db::Postgres(_) => Backend::Postgres,
            Db::Sqlite { .. } => Backend::Sqlite,
        }
    }

    /// A statement for this backend.
    pub fn sql(&self) -> Sql {
        Sql::new(self.backend())
    }

    /// `Sql::statement` for this backend.
    pub fn statement(&self, text: &str, args: Vec<Value>) -> Sql {
        Sql::statement(self.backend(), text, args)
    }

    pub async fn execute(&self, sql: &Sql) -> StoreResult<u64> {
        match self {
            Db::Postgres(pool) => Ok(pg_query(sql).execute(pool).await?.rows_affected()),
            Db::Sqlite { derived, .. } => {
                Ok(sqlite_query(sql).execute(derived).await?.rows_affected())
            }
        }
    }

    pub async fn fetch_all<T: TypedRow>(&self, sql: &Sql) -> StoreResult<Vec<T>> {
        let rows = match self {
            Db::Postgres(pool) => pg_query(sql)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| T::from_row(row))
                .collect::<Result<Vec<T>, sqlx::Error>>()?,
            Db::Sqlite { durable, .. } => sqlite_query(sql)
                .fetch_all(durable)
                .await?
                .iter()
                .map(|row| T::from_row(row))
                .collect::<Result<Vec<T>, sqlx::Error>>()?,
        };
        Ok(rows)
    }

    pub async fn fetch_optional<T: TypedRow>(&self, sql: &Sql) -> StoreResult<Option<T>> {
        Ok(match self {
            Db::Postgres(pool) => match pg_query(sql).fetch_optional(pool).await? {
                Some(row) => Some(T::from_row(&row)?),
                None => None,
            },
            Db::Sqlite { durable, .. } => match sqlite_query(sql).fetch_optional(durable).await? {
                Some(row) => Some(T::from_row(&row)?),
                None => None,
            },
        })
    }

    pub async fn fetch_one<T: TypedRow>(&self, sql: &Sql) -> StoreResult<T> {
        self.fetch_optional(sql)
            .await?
            .ok_or_else(|| StoreError::Query(sqlx::Error::RowNotFound))
    }

    /// Streams a read's rows into a channel of `capacity` rows, so a
    /// million-row export holds only a few in memory. The task ends when
    /// the rows do or the receiver is dropped.
    pub fn stream<T: TypedRow>(&self, sql: Sql, capacity: usize) -> mpsc::Receiver<StoreResult<T>> {
        use futures_util::StreamExt;
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let db = self.clone();
        tokio::spawn(async move {
            macro_rules! forward {
                ($rows:expr) => {{
                    let mut rows = $rows;
                    while let Some(row) = rows.next().await {
                        let item = row
                            .and_then(|row| T::from_row(&row))
                            .map_err(StoreError::from);
                        let failed = item.is_err();
                        if sender.send(item).await.is_err() || failed {
                            return;
                        }
                    }
                }};
            }
            match &db {
                Db::Postgres(pool) => forward!(pg_query(&sql).fetch(pool)),
                Db::Sqlite { durable, .. } => forward!(sqlite_query(&sql).fetch(durable)),
            }
        });
        receiver
    }

    /// `column`, an address column, inside `network`, as a condition.
    /// PostgreSQL tests it with inet's `<<=`; SQLite keeps addresses as
    /// text, so the addresses of the block among the known sources
    /// (`ip_sources` holds the source of every stored record) are listed
    /// here and matched as a list.
    pub async fn in_network(
        &self,
        sql: &mut Sql,
        column: &str,
        network: IpNet,
    ) -> StoreResult<String> {
        match self.backend() {
            Backend::Postgres => {
                let block = sql.placeholder(network.trunc().to_string());
                Ok(format!("{column} <<= CAST({block} AS cidr)"))
            }
            Backend::Sqlite => {
                let known: Vec<(String,)> = self
                    .fetch_all(&self.statement("SELECT ip FROM ip_sources", Vec::new()))
                    .await?;
                let inside: Vec<String> = known
                    .into_iter()
                    .map(|(ip,)| ip)
                    .filter(|ip| ip.parse::<IpAddr>().is_ok_and(|ip| network.contains(&ip)))
                    .collect();
                let list = sql.placeholder(json(&inside));
                Ok(format!("{column} IN (SELECT value FROM json_each({list}))"))
            }
        }
    }

    /// A transaction for derived data (reports, rollups, statuses): on
    /// PostgreSQL it commits without waiting for the WAL flush (anything
    /// lost in a crash is redone from the raw message, whose own insert
    /// always waits); on SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), so it never fails half way on a busy file.
    pub async fn begin_derived(&self) -> StoreResult<Tx> {
        match self {
            Db::Postgres(pool) => {
                let mut transaction = pool.begin().await?;
                sqlx::query("SET LOCAL synchronous_commit = off")
                    .execute(&mut *transaction)
                    .await?;
                Ok(Tx::Postgres(transaction))
            }
            Db::Sqlite { derived, .. } => {
                Ok(Tx::Sqlite(derived.begin_with("BEGIN IMMEDIATE").await?))
            }
        }
    }

    /// A transaction whose commit is durable before it returns (the inbox).
    pub async fn begin_durable(&self) -> StoreResult<Tx> {
        match self {
            Db::Postgres(pool) => Ok(Tx::Postgres(pool.begin().await?)),
            Db::Sqlite { durable, .. } => {
                Ok(Tx::Sqlite(durable.begin_with("BEGIN IMMEDIATE").await?))
            }
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Postgres(pool) => pool.close().await,
            Db::Sqlite { durable, derived } => {
                durable.close().await;
                derived.close().await;
            }
        }
    }
}

/// An open transaction on either backend.
pub enum Tx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl Tx {
    pub fn backend(&self) -> Backend {
        match self {
            Tx::Postgres(_) => Backend::Postgres,
            Tx::Sqlite(_) => Backend::Sqlite,
        }
    }

    pub fn statement(&self, text: &str, args: Vec<Value>) -> Sql {
        Sql::statement(self.backend(), text, args)
    }

    pub fn sql(&self) -> Sql {
        Sql::new(self.backend())
    }

    /// The transaction's connection, to run statements on.
    pub fn connection(&mut self) -> Connection<'_> {
        match self {
            Tx::Postgres(transaction) => Connection::Postgres(transaction),
            Tx::Sqlite(transaction) => Connection::Sqlite(transaction),
        }
    }

    pub async fn execute(&mut self, sql: &Sql) -> StoreResult<u64> {
        self.connection().execute(sql).await
    }

    pub async fn fetch_all<T: TypedRow>(&mut self, sql: &Sql) -> StoreResult<Vec<T>> {
        self.connection().fetch_all(sql).await
    }

    pub async fn fetch_optional<T: TypedRow>(&mut self, sql: &Sql) -> StoreResult<Option<T>> {
        self.connection().fetch_optional(sql).await
    }

    pub async fn fetch_one<T: TypedRow>(&mut self, sql: &Sql) -> StoreResult<T> {
        self.connection().fetch_one(sql).await
    }

    pub async fn commit(self) -> StoreResult<()> {
        match self {
            Tx::Postgres(transaction) => transaction.commit().await?,
            Tx::Sqlite(transaction) => transaction.commit().await?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_statements_number_their_placeholders_after_the_first() {
        let mut outer = Sql::new(Backend::Postgres);
        outer
            .push("SELECT * FROM a WHERE x = ")
            .bind(1i64)
            .push(" AND y IN (");
        let mut inner = Sql::new(Backend::Postgres);
        inner
            .push("SELECT y FROM b WHERE z = ")
            .bind("it's")
            .push(" AND note <> '$1'");
        outer.append(&inner).push(")");
        assert_eq!(
            outer.text(),
            "SELECT * FROM a WHERE x = $1 AND y IN (SELECT y FROM b WHERE z = $2 AND note <> '$1')"
        );
        assert_eq!(outer.args.len(), 2);
    }

    #[test]
    fn batches_travel_as_one_json_parameter_on_both_backends() {
        let columns = [("ip", ColumnType::Text), ("asn", ColumnType::Int)];
        assert_eq!(
            Backend::Postgres.json_rows("$1", "u", &columns),
            "json_to_recordset(CAST($1 AS json)) AS u(ip text, asn int8)"
        );
        assert_eq!(
            Backend::Sqlite.json_rows("$1", "u", &columns),
            "(SELECT j.value ->> 'ip' AS ip, j.value ->> 'asn' AS asn FROM json_each($1) AS j) AS u"
        );
    }
}
