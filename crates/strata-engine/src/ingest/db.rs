//! Database sources: a table or a query read from PostgreSQL or
//! MySQL/MariaDB, whole (`snapshot`) or past a watermark (`cursor`).
//!
//! Values are fetched with their database types and handed to the same row
//! conversion as NDJSON (so a value that does not fit a declared column is
//! quarantined with the row, never guessed at). Without declared columns the
//! types come from the database's.

use futures::TryStreamExt;
use serde_json::{Map, Value};
use sqlx::{Column, Row, TypeInfo};
use strata_project::{ColumnType, Database, Format, Relation, Source, SourceMode};

use crate::error::{Error, Result};

/// The watermark of a cursor source: the cursor value of the last row read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Watermark {
    /// The value as SQL text (a number, or a timestamp/text to quote).
    pub value: String,
    /// Whether it is a string literal in SQL.
    pub quoted: bool,
}

impl Watermark {
    /// As a SQL literal.
    fn literal(&self) -> String {
        if self.quoted {
            format!("'{}'", self.value.replace('\'', "''"))
        } else {
            self.value.clone()
        }
    }
}

/// What a fetch returned.
pub(crate) struct Fetched {
    /// Column names (normalized) and the types the database reported.
    pub columns: Vec<(String, ColumnType)>,
    /// Rows, one JSON value per column.
    pub rows: Vec<Vec<Value>>,
    /// The cursor value of the last row, for the next run.
    pub watermark: Option<Watermark>,
    /// Where the rows came from, in order, and how many each: one part for a
    /// query, one per page for an API (accounted for like files).
    pub parts: Vec<(String, usize)>,
}

/// How a source shows in `_source` and the manifest (no password).
pub(crate) fn origin(db: &Database) -> String {
    let what = match &db.relation {
        Relation::Table(t) => format!("table {t}"),
        Relation::Query(q) => {
            use sha2::Digest;
            let h = sha2::Sha256::digest(q.as_bytes());
            format!("query {}", &hex::encode(h)[..12])
        }
    };
    format!("{} {what}", strata_state::redact(&db.url))
}

/// The SELECT a run sends.
fn select_sql(source: &Source, db: &Database, watermark: Option<&Watermark>) -> String {
    let inner = match &db.relation {
        Relation::Table(t) => format!("SELECT * FROM {t}"),
        Relation::Query(q) => q.clone(),
    };
    match (&db.cursor, source.mode) {
        (Some(c), SourceMode::Cursor) => {
            let filter = watermark
                .map(|w| format!(" WHERE {c} > {}", w.literal()))
                .unwrap_or_default();
            format!("SELECT * FROM ({inner}) strata_src{filter} ORDER BY {c}")
        }
        _ => inner,
    }
}

/// Reads the source's rows (past `watermark` in cursor mode).
pub(crate) async fn fetch(
    source: &Source,
    db: &Database,
    watermark: Option<&Watermark>,
) -> Result<Fetched> {
    let sql = select_sql(source, db, watermark);
    let shown = strata_state::redact(&db.url);
    let fail = |what: &str, e: sqlx::Error| {
        Error::External(format!("source `{}`: {what} {shown}: {e}", source.name))
    };
    let bad_sql = |e: sqlx::Error| match e {
        sqlx::Error::Database(d) => Error::User(format!(
            "source `{}`: the database rejected the query ({}): {}",
            source.name,
            sql.lines().next().unwrap_or(""),
            d.message()
        )),
        other => Error::External(format!(
            "source `{}`: reading {shown}: {other}",
            source.name
        )),
    };
    let mut fetched = match source.format {
        Format::Postgres => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&db.url)
                .await
                .map_err(|e| fail("cannot connect to", e))?;
            let mut stream = sqlx::query(&sql).fetch(&mut conn);
            let mut out = Collector::default();
            while let Some(row) = stream.try_next().await.map_err(bad_sql)? {
                out.push(&row, source, pg_value)?;
            }
            out.done()
        }
        Format::Mysql => {
            use sqlx::Connection;
            let mut conn = sqlx::MySqlConnection::connect(&db.url)
                .await
                .map_err(|e| fail("cannot connect to", e))?;
            let mut stream = sqlx::query(&sql).fetch(&mut conn);
            let mut out = Collector::default();
            while let Some(row) = stream.try_next().await.map_err(bad_sql)? {
                out.push(&row, source, mysql_value)?;
            }
            out.done()
        }
        _ => {
            return Err(Error::Internal(format!(
                "source `{}` is not a database",
                source.name
            )));
        }
    };
    fetched.parts = vec![(origin(db), fetched.rows.len())];
    if source.mode == SourceMode::Cursor
        && let Some(c) = &db.cursor
    {
        let Some(i) = fetched.columns.iter().position(|(n, _)| n == c) else {
            if fetched.rows.is_empty() {
                return Ok(fetched);
            }
            return Err(Error::User(format!(
                "strata.toml: source `{}`: cursor column `{c}` is not among the columns read ({})",
                source.name,
                fetched
                    .columns
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        fetched.watermark = fetched
            .rows
            .iter()
            .rev()
            .map(|r| &r[i])
            .find(|v| !v.is_null())
            .map(|v| match v {
                Value::Number(n) => Watermark {
                    value: n.to_string(),
                    quoted: false,
                },
                Value::String(s) => Watermark {
                    value: s.clone(),
                    quoted: true,
                },
                other => Watermark {
                    value: other.to_string(),
                    quoted: true,
                },
            });
    }
    Ok(fetched)
}

/// Rows as JSON values, with the column types of the first row.
#[derive(Default)]
struct Collector {
    columns: Vec<(String, ColumnType)>,
    rows: Vec<Vec<Value>>,
    /// Largest decimal scale seen per column (for inferred decimal types).
    scales: Vec<u32>,
}

impl Collector {
    fn start(&mut self, names: Vec<(String, &str)>) {
        if !self.columns.is_empty() {
            return;
        }
        self.scales = vec![0; names.len()];
        self.columns = names
            .into_iter()
            .map(|(n, t)| (strata_project::normalize_name(&n), type_of(t)))
            .collect();
    }

    fn note_scale(&mut self, i: usize, v: &Value) {
        if let (Some(ColumnType::Decimal(..)), Value::String(s)) =
            (self.columns.get(i).map(|c| c.1), v)
            && let Some((_, frac)) = s.split_once('.')
            && let Some(sc) = self.scales.get_mut(i)
        {
            *sc = (*sc).max(frac.len() as u32);
        }
    }

    /// Adds a row, each value read by `value(row, index, type name)`.
    fn push<R: Row>(
        &mut self,
        row: &R,
        source: &Source,
        value: impl Fn(&R, usize, &str) -> std::result::Result<Value, sqlx::Error>,
    ) -> Result<()> {
        self.start(
            row.columns()
                .iter()
                .map(|c| (c.name().to_string(), c.type_info().name()))
                .collect(),
        );
        let mut vals = Vec::with_capacity(row.len());
        for (i, c) in row.columns().iter().enumerate() {
            let ty = c.type_info().name();
            let v = value(row, i, ty).map_err(|e| unsupported(source, c.name(), ty, e))?;
            self.note_scale(i, &v);
            vals.push(v);
        }
        self.rows.push(vals);
        Ok(())
    }

    fn done(mut self) -> Fetched {
        for (i, (_, t)) in self.columns.iter_mut().enumerate() {
            if let ColumnType::Decimal(..) = t {
                let s = self.scales.get(i).copied().unwrap_or(0).clamp(2, 18) as i8;
                *t = ColumnType::Decimal(38, s);
            }
        }
        Fetched {
            columns: self.columns,
            rows: self.rows,
            watermark: None,
            parts: vec![],
        }
    }
}

fn unsupported(source: &Source, column: &str, ty: &str, e: sqlx::Error) -> Error {
    Error::User(format!(
        "source `{}`: column `{column}` has type {ty}, which Strata cannot read ({e}); cast it in a `query`, e.g. select {column}::text as {column} …",
        source.name
    ))
}

/// The column type Strata gives a database type when none is declared.
fn type_of(db_type: &str) -> ColumnType {
    let t = db_type.to_ascii_uppercase();
    let t = t.trim_end_matches(" UNSIGNED");
    match t {
        "INT2" | "INT4" | "INT8" | "SMALLINT" | "INT" | "INTEGER" | "BIGINT" | "TINYINT"
        | "MEDIUMINT" | "YEAR" => ColumnType::Int64,
        "FLOAT4" | "FLOAT8" | "FLOAT" | "DOUBLE" | "REAL" => ColumnType::Float64,
        "NUMERIC" | "DECIMAL" => ColumnType::Decimal(38, 2),
        "BOOL" | "BOOLEAN" => ColumnType::Boolean,
        "DATE" => ColumnType::Date,
        "TIMESTAMP" | "TIMESTAMPTZ" | "DATETIME" => ColumnType::Timestamp,
        _ => ColumnType::Utf8,
    }
}

/// Microsecond timestamps in one format, so they order as text and parse back.
fn ts_text(t: chrono::NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

fn pg_value(
    row: &sqlx::postgres::PgRow,
    i: usize,
    ty: &str,
) -> std::result::Result<Value, sqlx::Error> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    Ok(match ty {
        "BOOL" => row
            .try_get::<Option<bool>, _>(i)?
            .map(Value::Bool)
            .unwrap_or(Value::Null),
        "INT2" => row
            .try_get::<Option<i16>, _>(i)?
            .map(|v| Value::from(i64::from(v)))
            .unwrap_or(Value::Null),
        "INT4" => row
            .try_get::<Option<i32>, _>(i)?
            .map(|v| Value::from(i64::from(v)))
            .unwrap_or(Value::Null),
        "INT8" => row
            .try_get::<Option<i64>, _>(i)?
            .map(Value::from)
            .unwrap_or(Value::Null),
        "FLOAT4" => row
            .try_get::<Option<f32>, _>(i)?
            .map(|v| Value::from(f64::from(v)))
            .unwrap_or(Value::Null),
        "FLOAT8" => row
            .try_get::<Option<f64>, _>(i)?
            .map(Value::from)
            .unwrap_or(Value::Null),
        "NUMERIC" => row
            .try_get::<Option<rust_decimal::Decimal>, _>(i)?
            .map(|d| Value::String(d.to_string()))
            .unwrap_or(Value::Null),
        "DATE" => row
            .try_get::<Option<NaiveDate>, _>(i)?
            .map(|d| Value::String(d.format("%Y-%m-%d").to_string()))
            .unwrap_or(Value::Null),
        "TIMESTAMP" => row
            .try_get::<Option<NaiveDateTime>, _>(i)?
            .map(|t| Value::String(ts_text(t)))
            .unwrap_or(Value::Null),
        "TIMESTAMPTZ" => row
            .try_get::<Option<DateTime<Utc>>, _>(i)?
            .map(|t| Value::String(format!("{}+00:00", ts_text(t.naive_utc()))))
            .unwrap_or(Value::Null),
        "JSON" | "JSONB" => row
            .try_get::<Option<serde_json::Value>, _>(i)?
            .map(|v| Value::String(v.to_string()))
            .unwrap_or(Value::Null),
        _ => row
            .try_get::<Option<String>, _>(i)?
            .map(Value::String)
            .unwrap_or(Value::Null),
    })
}

fn mysql_value(
    row: &sqlx::mysql::MySqlRow,
    i: usize,
    ty: &str,
) -> std::result::Result<Value, sqlx::Error> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    let unsigned = ty.ends_with("UNSIGNED");
    Ok(match ty.trim_end_matches(" UNSIGNED") {
        "BOOLEAN" => row
            .try_get::<Option<bool>, _>(i)?
            .map(Value::Bool)
            .unwrap_or(Value::Null),
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" if unsigned => row
            .try_get::<Option<u64>, _>(i)?
            .map(Value::from)
            .unwrap_or(Value::Null),
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => row
            .try_get::<Option<i64>, _>(i)?
            .map(Value::from)
            .unwrap_or(Value::Null),
        "FLOAT" => row
            .try_get::<Option<f32>, _>(i)?
            .map(|v| Value::from(f64::from(v)))
            .unwrap_or(Value::Null),
        "DOUBLE" => row
            .try_get::<Option<f64>, _>(i)?
            .map(Value::from)
            .unwrap_or(Value::Null),
        "DECIMAL" => row
            .try_get::<Option<rust_decimal::Decimal>, _>(i)?
            .map(|d| Value::String(d.to_string()))
            .unwrap_or(Value::Null),
        "DATE" => row
            .try_get::<Option<NaiveDate>, _>(i)?
            .map(|d| Value::String(d.format("%Y-%m-%d").to_string()))
            .unwrap_or(Value::Null),
        "DATETIME" => row
            .try_get::<Option<NaiveDateTime>, _>(i)?
            .map(|t| Value::String(ts_text(t)))
            .unwrap_or(Value::Null),
        "TIMESTAMP" => row
            .try_get::<Option<DateTime<Utc>>, _>(i)?
            .map(|t| Value::String(ts_text(t.naive_utc())))
            .unwrap_or(Value::Null),
        "JSON" => row
            .try_get::<Option<serde_json::Value>, _>(i)?
            .map(|v| Value::String(v.to_string()))
            .unwrap_or(Value::Null),
        _ => row
            .try_get::<Option<String>, _>(i)?
            .map(Value::String)
            .unwrap_or(Value::Null),
    })
}

/// One fetched row as a JSON object, for the quarantine table's raw record.
pub(crate) fn raw_record(columns: &[(String, ColumnType)], row: &[Value]) -> String {
    let mut m = Map::new();
    for ((n, _), v) in columns.iter().zip(row) {
        m.insert(n.clone(), v.clone());
    }
    Value::Object(m).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_types_map_to_column_types() {
        assert_eq!(type_of("INT4"), ColumnType::Int64);
        assert_eq!(type_of("BIGINT UNSIGNED"), ColumnType::Int64);
        assert_eq!(type_of("TIMESTAMPTZ"), ColumnType::Timestamp);
        assert_eq!(type_of("DATETIME"), ColumnType::Timestamp);
        assert_eq!(type_of("NUMERIC"), ColumnType::Decimal(38, 2));
        assert_eq!(type_of("UUID"), ColumnType::Utf8);
    }

    #[test]
    fn watermark_literals_are_quoted_when_text() {
        let w = Watermark {
            value: "2024-01-01 00:00:00.000000".into(),
            quoted: true,
        };
        assert_eq!(w.literal(), "'2024-01-01 00:00:00.000000'");
        let n = Watermark {
            value: "42".into(),
            quoted: false,
        };
        assert_eq!(n.literal(), "42");
    }
}
