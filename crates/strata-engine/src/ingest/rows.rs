//! Row-by-row decoding of text sources (CSV, NDJSON) into typed Arrow columns.
//!
//! A row whose fields do not all convert to their column's type is not
//! guessed at: it is returned whole, with the reason and its line, for the
//! quarantine table.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::Value;
use strata_project::ColumnType;

/// Rows per Arrow batch.
pub const BATCH_ROWS: usize = 65_536;

/// The Arrow type of a declared column type.
pub fn arrow_type(t: ColumnType) -> DataType {
    match t {
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Utf8 => DataType::Utf8,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Date => DataType::Date32,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ColumnType::Decimal(p, s) => DataType::Decimal128(p, s),
    }
}

/// The declared type of an Arrow type, when Strata can parse text into it.
pub fn column_type(t: &DataType) -> Option<ColumnType> {
    Some(match t {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => ColumnType::Int64,
        DataType::Float32 | DataType::Float64 => ColumnType::Float64,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnType::Utf8,
        DataType::Boolean => ColumnType::Boolean,
        DataType::Date32 => ColumnType::Date,
        DataType::Timestamp(_, _) => ColumnType::Timestamp,
        DataType::Decimal128(p, s) => ColumnType::Decimal(*p, *s),
        _ => return None,
    })
}

/// The Arrow schema of declared columns.
pub fn schema_of(columns: &[(String, ColumnType)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, t)| Field::new(n, arrow_type(*t), true))
            .collect::<Vec<_>>(),
    ))
}

/// One converted value; text borrows from the record it was read from
/// when it can (no allocation per value).
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    /// Null.
    Null,
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
    /// Text.
    Str(Cow<'a, str>),
    /// Boolean.
    Bool(bool),
    /// Days since the epoch.
    Date(i32),
    /// Microseconds since the epoch, UTC.
    Ts(i64),
    /// Unscaled decimal.
    Dec(i128),
}

impl Cell<'_> {
    /// The same value, owning its text.
    pub fn into_owned(self) -> Cell<'static> {
        match self {
            Cell::Null => Cell::Null,
            Cell::Int(v) => Cell::Int(v),
            Cell::Float(v) => Cell::Float(v),
            Cell::Str(s) => Cell::Str(Cow::Owned(s.into_owned())),
            Cell::Bool(v) => Cell::Bool(v),
            Cell::Date(v) => Cell::Date(v),
            Cell::Ts(v) => Cell::Ts(v),
            Cell::Dec(v) => Cell::Dec(v),
        }
    }
}

/// An emptied cell vector under another lifetime, keeping its allocation
/// (collecting an empty vector's iterator into one of the same layout reuses
/// the buffer).
fn relabel<'x, 'y>(mut v: Vec<Cell<'x>>) -> Vec<Cell<'y>> {
    v.clear();
    v.into_iter().map(|_| Cell::Null).collect()
}

/// Converts text to a column type.
pub fn parse_text(s: &str, t: ColumnType) -> Result<Cell<'_>, String> {
    let v = s.trim();
    let bad = |what: &str| Err(format!("`{s}` is not a valid {what}"));
    match t {
        ColumnType::Utf8 => Ok(Cell::Str(Cow::Borrowed(s))),
        ColumnType::Int64 => match v.parse::<i64>() {
            Ok(i) => Ok(Cell::Int(i)),
            Err(_) => match v.parse::<f64>() {
                Ok(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Cell::Int(f as i64)),
                _ => bad("bigint"),
            },
        },
        ColumnType::Float64 => v.parse::<f64>().map(Cell::Float).or_else(|_| bad("double")),
        ColumnType::Boolean => match v.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" => Ok(Cell::Bool(true)),
            "false" | "f" | "0" | "no" => Ok(Cell::Bool(false)),
            _ => bad("boolean"),
        },
        ColumnType::Date => parse_date(v)
            .map(Cell::Date)
            .ok_or_else(|| format!("`{s}` is not a valid date (YYYY-MM-DD)")),
        ColumnType::Timestamp => parse_timestamp(v).map(Cell::Ts).ok_or_else(|| {
            format!("`{s}` is not a valid timestamp (YYYY-MM-DDTHH:MM:SS[.ffffff][+hh:mm])")
        }),
        ColumnType::Decimal(p, sc) => parse_decimal(v, p, sc)
            .map(Cell::Dec)
            .ok_or_else(|| format!("`{s}` is not a valid decimal({p},{sc})")),
    }
}

/// Converts a JSON value to a column type.
pub fn parse_json(v: &Value, t: ColumnType) -> Result<Cell<'_>, String> {
    match (v, t) {
        (Value::Null, _) => Ok(Cell::Null),
        (Value::String(s), ColumnType::Utf8) => Ok(Cell::Str(Cow::Borrowed(s))),
        (Value::String(s), _) => parse_text(s, t),
        (Value::Number(n), ColumnType::Int64) => match n.as_i64() {
            Some(i) => Ok(Cell::Int(i)),
            None => parse_text(&n.to_string(), t).map(Cell::into_owned),
        },
        (Value::Number(n), ColumnType::Float64) => n
            .as_f64()
            .map(Cell::Float)
            .ok_or_else(|| format!("`{n}` is not a valid double")),
        (Value::Number(n), ColumnType::Decimal(..)) => {
            parse_text(&n.to_string(), t).map(Cell::into_owned)
        }
        (Value::Bool(b), ColumnType::Boolean) => Ok(Cell::Bool(*b)),
        (other, ColumnType::Utf8) => Ok(Cell::Str(Cow::Owned(other.to_string()))),
        (other, _) => Err(format!("`{other}` is not a valid {t}")),
    }
}

fn parse_date(s: &str) -> Option<i32> {
    let d = match s.as_bytes() {
        // The common `YYYY-MM-DD`, without a format string.
        [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1]
            if [y0, y1, y2, y3, m0, m1, d0, d1]
                .iter()
                .all(|b| b.is_ascii_digit()) =>
        {
            let n = |bs: &[&u8]| {
                bs.iter()
                    .fold(0u32, |acc, b| acc * 10 + u32::from(**b - b'0'))
            };
            let year = i32::try_from(n(&[y0, y1, y2, y3])).ok()?;
            NaiveDate::from_ymd_opt(year, n(&[m0, m1]), n(&[d0, d1]))?
        }
        _ => NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?,
    };
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from((d - epoch).num_days()).ok()
}

fn parse_timestamp(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    // With an offset, as databases print them: `2024-01-01 10:00:00.5+00`.
    for f in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.timestamp_micros());
        }
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

fn parse_decimal(s: &str, precision: u8, scale: i8) -> Option<i128> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let scale = usize::try_from(scale).ok()?;
    if frac.len() > scale && frac[scale..].bytes().any(|b| b != b'0') {
        return None; // would lose digits
    }
    let mut v: i128 = 0;
    for b in int
        .bytes()
        .chain(frac.bytes().chain(std::iter::repeat(b'0')).take(scale))
    {
        v = v.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    if v >= 10i128.checked_pow(u32::from(precision))? {
        return None;
    }
    Some(if neg { -v } else { v })
}

enum Builder {
    Int(Int64Builder),
    Float(Float64Builder),
    Str(StringBuilder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
    Dec(Decimal128Builder, u8, i8),
}

impl Builder {
    fn new(t: ColumnType) -> Self {
        match t {
            ColumnType::Int64 => Builder::Int(Int64Builder::new()),
            ColumnType::Float64 => Builder::Float(Float64Builder::new()),
            ColumnType::Utf8 => Builder::Str(StringBuilder::new()),
            ColumnType::Boolean => Builder::Bool(BooleanBuilder::new()),
            ColumnType::Date => Builder::Date(Date32Builder::new()),
            ColumnType::Timestamp => {
                Builder::Ts(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
            ColumnType::Decimal(p, s) => Builder::Dec(Decimal128Builder::new(), p, s),
        }
    }

    fn push(&mut self, c: Cell<'_>) {
        match (self, c) {
            (Builder::Int(b), Cell::Int(v)) => b.append_value(v),
            (Builder::Float(b), Cell::Float(v)) => b.append_value(v),
            (Builder::Str(b), Cell::Str(v)) => b.append_value(v.as_ref()),
            (Builder::Bool(b), Cell::Bool(v)) => b.append_value(v),
            (Builder::Date(b), Cell::Date(v)) => b.append_value(v),
            (Builder::Ts(b), Cell::Ts(v)) => b.append_value(v),
            (Builder::Dec(b, ..), Cell::Dec(v)) => b.append_value(v),
            (Builder::Int(b), _) => b.append_null(),
            (Builder::Float(b), _) => b.append_null(),
            (Builder::Str(b), _) => b.append_null(),
            (Builder::Bool(b), _) => b.append_null(),
            (Builder::Date(b), _) => b.append_null(),
            (Builder::Ts(b), _) => b.append_null(),
            (Builder::Dec(b, ..), _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> Result<ArrayRef, String> {
        Ok(match self {
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
            Builder::Str(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Ts(b) => Arc::new(b.finish().with_timezone("UTC")),
            Builder::Dec(b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .map_err(|e| e.to_string())?,
            ),
        })
    }
}

/// A row that could not be loaded, for the quarantine table.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BadRow {
    /// The raw record as read.
    pub raw: String,
    /// Why it was rejected.
    pub error: String,
    /// 1-based line in the file.
    pub line: i64,
}

/// The column holding rescued values (`schema_drift = "rescue"`): a JSON
/// object of the row's unexpected fields and of values that did not fit their
/// column, by column name; null when nothing was rescued.
pub const RESCUED: &str = "_rescued";

/// Accumulates converted rows into Arrow batches.
pub struct RowSink {
    schema: SchemaRef,
    names: Vec<String>,
    rescue: Option<StringBuilder>,
    types: Vec<ColumnType>,
    builders: Vec<Builder>,
    rows: usize,
    /// Finished batches.
    pub batches: Vec<RecordBatch>,
    /// Rejected rows.
    pub bad: Vec<BadRow>,
    /// Rows read (good + bad).
    pub rows_read: i64,
    /// The allocation of each row's cells, kept between rows.
    cells: Vec<Cell<'static>>,
}

impl RowSink {
    /// A sink for these columns.
    pub fn new(columns: &[(String, ColumnType)]) -> Self {
        let types: Vec<ColumnType> = columns.iter().map(|(_, t)| *t).collect();
        Self {
            schema: schema_of(columns),
            names: columns.iter().map(|(n, _)| n.clone()).collect(),
            rescue: None,
            builders: types.iter().map(|t| Builder::new(*t)).collect(),
            types,
            rows: 0,
            batches: vec![],
            bad: vec![],
            rows_read: 0,
            cells: vec![],
        }
    }

    /// A sink that rescues instead of rejecting: a value that does not fit
    /// its column is loaded as null and kept in the `_rescued` column (the
    /// last column), with any unexpected fields of the row.
    pub fn rescuing(columns: &[(String, ColumnType)]) -> Self {
        let mut s = Self::new(columns);
        let mut fields: Vec<Field> = s
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(RESCUED, DataType::Utf8, true));
        s.schema = Arc::new(Schema::new(fields));
        s.rescue = Some(StringBuilder::new());
        s
    }

    /// The column types, in order.
    pub fn types(&self) -> &[ColumnType] {
        &self.types
    }

    /// Adds a row whose cells are produced by `convert(column_index, type)`;
    /// if any cell fails, the whole row goes to `bad` with `raw` and `line`.
    pub fn push_row<'a>(
        &mut self,
        line: i64,
        raw: impl FnOnce() -> String,
        convert: impl FnMut(usize, ColumnType) -> Result<Cell<'a>, String>,
    ) -> Result<(), String> {
        self.push_row_rescuing(line, raw, convert, |_| None, serde_json::Map::new())
    }

    /// As [`RowSink::push_row`]; in a rescuing sink a cell that fails is
    /// loaded as null and `original(column_index)` is kept in `_rescued`, with
    /// the row's unexpected fields `extra`.
    pub fn push_row_rescuing<'a>(
        &mut self,
        line: i64,
        raw: impl FnOnce() -> String,
        mut convert: impl FnMut(usize, ColumnType) -> Result<Cell<'a>, String>,
        original: impl Fn(usize) -> Option<Value>,
        extra: serde_json::Map<String, Value>,
    ) -> Result<(), String> {
        self.rows_read += 1;
        let mut cells: Vec<Cell<'a>> = relabel(std::mem::take(&mut self.cells));
        let mut rescued = extra;
        for (i, t) in self.types.iter().enumerate() {
            match convert(i, *t) {
                Ok(c) => cells.push(c),
                Err(e) => {
                    if self.rescue.is_some()
                        && let Some(v) = original(i)
                    {
                        rescued.insert(self.names[i].clone(), v);
                        cells.push(Cell::Null);
                        continue;
                    }
                    self.cells = relabel(cells);
                    self.bad.push(BadRow {
                        raw: raw(),
                        error: e,
                        line,
                    });
                    return Ok(());
                }
            }
        }
        for (b, c) in self.builders.iter_mut().zip(cells.drain(..)) {
            b.push(c);
        }
        self.cells = relabel(cells);
        if let Some(r) = &mut self.rescue {
            if rescued.is_empty() {
                r.append_null();
            } else {
                r.append_value(Value::Object(rescued).to_string());
            }
        }
        self.rows += 1;
        if self.rows >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// Rejects a row that could not even be split into fields.
    pub fn reject(&mut self, line: i64, raw: String, error: String) {
        self.rows_read += 1;
        self.bad.push(BadRow { raw, error, line });
    }

    /// Closes the current batch.
    pub fn flush(&mut self) -> Result<(), String> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut arrays = self
            .builders
            .iter_mut()
            .map(Builder::finish)
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(r) = &mut self.rescue {
            arrays.push(Arc::new(r.finish()) as ArrayRef);
        }
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| e.to_string())?;
        self.batches.push(batch);
        self.rows = 0;
        Ok(())
    }

    /// Rows loaded so far.
    pub fn rows_loaded(&self) -> i64 {
        self.batches
            .iter()
            .map(|b| b.num_rows() as i64)
            .sum::<i64>()
            + self.rows as i64
    }
}

/// A text column converted to `t` value by value with [`parse_text`], as the
/// row-by-row path converts it; `None` when a value does not fit (the row
/// path then decodes the chunk and quarantines that row).
pub fn typed_array(
    text: &datafusion::arrow::array::StringArray,
    t: ColumnType,
) -> Option<ArrayRef> {
    use datafusion::arrow::array::Array;
    if t == ColumnType::Utf8 {
        return Some(Arc::new(text.clone()));
    }
    let mut b = Builder::new(t);
    for i in 0..text.len() {
        if text.is_null(i) {
            b.push(Cell::Null);
        } else {
            b.push(parse_text(text.value(i), t).ok()?);
        }
    }
    b.finish().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_conversions() {
        assert_eq!(parse_text("42", ColumnType::Int64), Ok(Cell::Int(42)));
        assert!(parse_text("three", ColumnType::Int64).is_err());
        assert_eq!(
            parse_text("1970-01-02", ColumnType::Date),
            Ok(Cell::Date(1))
        );
        assert!(parse_text("2024-02-31", ColumnType::Date).is_err());
        assert_eq!(
            parse_text("2024-02-29", ColumnType::Date),
            Ok(Cell::Date(19782))
        );
        assert_eq!(
            parse_text("1969-12-31", ColumnType::Date),
            Ok(Cell::Date(-1))
        );
        assert!(parse_text("2024-13-01", ColumnType::Date).is_err());
        assert!(parse_text("2024-1a-01", ColumnType::Date).is_err());
        // Not zero-padded: the general parser still reads it.
        assert_eq!(parse_text("1970-1-2", ColumnType::Date), Ok(Cell::Date(1)));
        assert_eq!(
            parse_text("1970-01-01T00:00:01", ColumnType::Timestamp),
            Ok(Cell::Ts(1_000_000))
        );
        assert_eq!(
            parse_text("1970-01-01T01:00:00+01:00", ColumnType::Timestamp),
            Ok(Cell::Ts(0))
        );
        assert!(parse_text("2024-01-32T10:00:00", ColumnType::Timestamp).is_err());
        for db in ["1970-01-01 01:00:00.000000+01", "1970-01-01 01:00:00+01:00"] {
            assert_eq!(
                parse_text(db, ColumnType::Timestamp),
                Ok(Cell::Ts(0)),
                "{db}"
            );
        }
        assert_eq!(
            parse_text("-12.5", ColumnType::Decimal(5, 2)),
            Ok(Cell::Dec(-1250))
        );
        assert!(parse_text("12.345", ColumnType::Decimal(5, 2)).is_err());
        assert!(parse_text("12345.5", ColumnType::Decimal(5, 2)).is_err());
    }

    #[test]
    fn json_conversions() {
        assert_eq!(
            parse_json(&serde_json::json!(7), ColumnType::Int64),
            Ok(Cell::Int(7))
        );
        assert_eq!(
            parse_json(&serde_json::json!("7"), ColumnType::Int64),
            Ok(Cell::Int(7))
        );
        assert!(parse_json(&serde_json::json!("three"), ColumnType::Int64).is_err());
        assert_eq!(
            parse_json(&serde_json::json!(null), ColumnType::Int64),
            Ok(Cell::Null)
        );
        assert_eq!(
            parse_json(&serde_json::json!({"a":1}), ColumnType::Utf8),
            Ok(Cell::Str("{\"a\":1}".into()))
        );
    }

    #[test]
    fn bad_rows_are_kept_whole() {
        let mut sink = RowSink::new(&[
            ("a".into(), ColumnType::Int64),
            ("b".into(), ColumnType::Utf8),
        ]);
        let rows = [["1", "x"], ["two", "y"], ["3", "z"]];
        for (i, r) in rows.iter().enumerate() {
            sink.push_row(i as i64 + 1, || r.join(","), |c, t| parse_text(r[c], t))
                .expect("push");
        }
        sink.flush().expect("flush");
        assert_eq!(sink.rows_read, 3);
        assert_eq!(sink.rows_loaded(), 2);
        assert_eq!(
            sink.bad,
            vec![BadRow {
                raw: "two,y".into(),
                error: "`two` is not a valid bigint".into(),
                line: 2
            }]
        );
    }
}
