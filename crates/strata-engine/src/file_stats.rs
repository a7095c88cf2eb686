//! Delta `add` actions for Parquet files Strata wrote itself (bronze files
//! written while a CSV file streams in, model results written by Ballista's
//! executors): the file's row count, and per top-level column its null count
//! and its minimum and maximum, read from the file's footer, in the JSON form
//! delta-rs and Spark write, so readers can skip the file by value.
//!
//! Bounds are only ever widened, never narrowed: a timestamp's maximum is
//! rounded up to the next millisecond (the log keeps milliseconds), a text
//! minimum is cut to 32 characters (a prefix is no larger), and a text
//! maximum longer than 32 characters is left out.

use chrono::{DateTime, Timelike};
use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use datafusion::parquet::arrow::parquet_to_arrow_schema;
use datafusion::parquet::file::metadata::ParquetMetaData;
use serde_json::{Map, Value, json};

/// The longest text kept as a bound.
const TEXT_BOUND_CHARS: usize = 32;

/// The `stats` JSON of a Delta `add` action for a Parquet file with this
/// footer. Columns whose statistics are missing (in any row group) or of a
/// type the log cannot hold get no bounds; the row count is always there.
pub fn stats_json(meta: &ParquetMetaData) -> String {
    let rows = meta.file_metadata().num_rows();
    let mut mins = Map::new();
    let mut maxes = Map::new();
    let mut nulls = Map::new();
    let descr = meta.file_metadata().schema_descr();
    if let Ok(schema) = parquet_to_arrow_schema(descr, meta.file_metadata().key_value_metadata()) {
        let groups = meta.row_groups();
        for field in schema.fields() {
            let Ok(conv) = StatisticsConverter::try_new(field.name(), &schema, descr) else {
                continue;
            };
            if let Ok(n) = conv.row_group_null_counts(groups.iter())
                && !groups.is_empty()
                && n.null_count() == 0
            {
                nulls.insert(field.name().clone(), json!(n.values().iter().sum::<u64>()));
            }
            let bound =
                |arr: datafusion::parquet::errors::Result<datafusion::arrow::array::ArrayRef>,
                 max: bool| {
                    let arr = arr.ok()?;
                    if arr.is_empty() || arr.null_count() > 0 {
                        return None;
                    }
                    let mut best: Option<ScalarValue> = None;
                    for i in 0..arr.len() {
                        let v = ScalarValue::try_from_array(&arr, i).ok()?;
                        best = match best {
                            None => Some(v),
                            Some(b) => {
                                let keep_b = match b.partial_cmp(&v)? {
                                    std::cmp::Ordering::Less => !max,
                                    _ => max,
                                };
                                Some(if keep_b { b } else { v })
                            }
                        };
                    }
                    to_json(&best?, field.data_type(), max)
                };
            if let Some(v) = bound(conv.row_group_mins(groups.iter()), false) {
                mins.insert(field.name().clone(), v);
            }
            if let Some(v) = bound(conv.row_group_maxes(groups.iter()), true) {
                maxes.insert(field.name().clone(), v);
            }
        }
    }
    json!({
        "numRecords": rows,
        "minValues": mins,
        "maxValues": maxes,
        "nullCount": nulls,
    })
    .to_string()
}

/// A bound in the log's JSON form; `max` says which side it bounds.
fn to_json(v: &ScalarValue, t: &DataType, max: bool) -> Option<Value> {
    use ScalarValue as S;
    let finite = |f: f64| f.is_finite().then(|| json!(f));
    Some(match v {
        S::Boolean(Some(b)) => json!(b),
        S::Int8(Some(i)) => json!(i),
        S::Int16(Some(i)) => json!(i),
        S::Int32(Some(i)) => json!(i),
        S::Int64(Some(i)) => json!(i),
        S::UInt8(Some(i)) => json!(i),
        S::UInt16(Some(i)) => json!(i),
        S::UInt32(Some(i)) => json!(i),
        S::UInt64(Some(i)) => json!(i),
        S::Float32(Some(f)) => finite(f64::from(*f))?,
        S::Float64(Some(f)) => finite(*f)?,
        S::Decimal128(Some(d), _, s) => {
            if *s == 0 {
                json!(i64::try_from(*d).ok()?)
            } else {
                // As delta-rs and Spark: a JSON number.
                finite(*d as f64 / 10f64.powi(i32::from(*s)))?
            }
        }
        S::Date32(Some(d)) => {
            let day = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?
                .checked_add_signed(chrono::Duration::days(i64::from(*d)))?;
            json!(day.format("%Y-%m-%d").to_string())
        }
        S::TimestampSecond(Some(x), _) => timestamp(x.checked_mul(1_000_000)?, t, max)?,
        S::TimestampMillisecond(Some(x), _) => timestamp(x.checked_mul(1_000)?, t, max)?,
        S::TimestampMicrosecond(Some(x), _) => timestamp(*x, t, max)?,
        S::TimestampNanosecond(Some(x), _) => {
            let micros = if max {
                x.div_euclid(1_000) + i64::from(x.rem_euclid(1_000) != 0)
            } else {
                x.div_euclid(1_000)
            };
            timestamp(micros, t, max)?
        }
        S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s)) => {
            if s.chars().count() <= TEXT_BOUND_CHARS {
                json!(s)
            } else if max {
                return None;
            } else {
                json!(s.chars().take(TEXT_BOUND_CHARS).collect::<String>())
            }
        }
        _ => return None,
    })
}

/// A timestamp bound at millisecond precision (a maximum rounded up), with a
/// time zone (`…Z`) or without (`timestamp_ntz`), as delta-rs writes them.
fn timestamp(micros: i64, t: &DataType, max: bool) -> Option<Value> {
    let millis = if max {
        micros.div_euclid(1_000) + i64::from(micros.rem_euclid(1_000) != 0)
    } else {
        micros.div_euclid(1_000)
    };
    let at = DateTime::from_timestamp_millis(millis)?.naive_utc();
    let utc = matches!(t, DataType::Timestamp(_, Some(_)));
    let format = match (utc, at.nanosecond() == 0) {
        (true, true) => "%Y-%m-%dT%H:%M:%SZ",
        (true, false) => "%Y-%m-%dT%H:%M:%S%.3fZ",
        (false, true) => "%Y-%m-%d %H:%M:%S",
        (false, false) => "%Y-%m-%d %H:%M:%S%.3f",
    };
    Some(json!(at.format(format).to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        Date32Array, Decimal128Array, Int64Array, RecordBatch, StringArray,
        TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::WriterProperties;

    use super::*;

    #[test]
    fn bounds_counts_and_forms_match_the_delta_log() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("price", DataType::Decimal128(15, 2), true),
            Field::new("day", DataType::Date32, true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("name", DataType::Utf8, true),
            Field::new("note", DataType::Utf8, true),
        ]));
        let batch = |ids: Vec<Option<i64>>, base: i128| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(
                        Decimal128Array::from(vec![Some(base + 1050), Some(-250), None])
                            .with_precision_and_scale(15, 2)
                            .expect("decimal"),
                    ),
                    Arc::new(Date32Array::from(vec![Some(0), Some(19782), None])),
                    Arc::new(
                        TimestampMicrosecondArray::from(vec![Some(1_500), Some(1_000_000), None])
                            .with_timezone("UTC"),
                    ),
                    Arc::new(StringArray::from(vec![Some("b"), Some("a"), None])),
                    Arc::new(StringArray::from(vec![
                        Some("x".repeat(40)),
                        Some("y".repeat(40)),
                        None,
                    ])),
                ],
            )
            .expect("batch")
        };
        let mut buf = vec![];
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(3))
            .build();
        let mut w = ArrowWriter::try_new(&mut buf, schema.clone(), Some(props)).expect("writer");
        w.write(&batch(vec![Some(5), None, Some(7)], 0))
            .expect("write");
        w.write(&batch(vec![Some(-3), Some(9), Some(1)], 100))
            .expect("write");
        let meta = w.close().expect("close");
        assert_eq!(meta.num_row_groups(), 2);
        let stats: Value = serde_json::from_str(&stats_json(&meta)).expect("json");
        assert_eq!(stats["numRecords"], json!(6));
        assert_eq!(stats["minValues"]["id"], json!(-3));
        assert_eq!(stats["maxValues"]["id"], json!(9));
        assert_eq!(stats["nullCount"]["id"], json!(1));
        assert_eq!(stats["minValues"]["price"], json!(-2.5));
        assert_eq!(stats["maxValues"]["price"], json!(11.5));
        assert_eq!(stats["nullCount"]["price"], json!(2));
        assert_eq!(stats["minValues"]["day"], json!("1970-01-01"));
        assert_eq!(stats["maxValues"]["day"], json!("2024-02-29"));
        // 1.5 ms: the minimum is cut down, the maximum (1 s) stays.
        assert_eq!(stats["minValues"]["at"], json!("1970-01-01T00:00:00.001Z"));
        assert_eq!(stats["maxValues"]["at"], json!("1970-01-01T00:00:01Z"));
        assert_eq!(stats["minValues"]["name"], json!("a"));
        assert_eq!(stats["maxValues"]["name"], json!("b"));
        // Long text: the minimum is a prefix, the maximum is left out.
        assert_eq!(stats["minValues"]["note"], json!("x".repeat(32)));
        assert!(stats["maxValues"].get("note").is_none());
    }

    #[test]
    fn a_maximum_timestamp_is_rounded_up_to_the_millisecond() {
        let t = DataType::Timestamp(TimeUnit::Microsecond, None);
        assert_eq!(
            timestamp(1_500, &t, true),
            Some(json!("1970-01-01 00:00:00.002"))
        );
        assert_eq!(
            timestamp(-1_500, &t, false),
            Some(json!("1969-12-31 23:59:59.998"))
        );
    }

    #[test]
    fn columns_without_statistics_get_no_bounds() {
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
        let props = crate::ingest::stats::bronze_writer_properties(&schema);
        let mut buf = vec![];
        let mut w = ArrowWriter::try_new(&mut buf, schema.clone(), Some(props)).expect("writer");
        w.write(
            &RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["a"]))])
                .expect("batch"),
        )
        .expect("write");
        let stats: Value =
            serde_json::from_str(&stats_json(&w.close().expect("close"))).expect("json");
        assert_eq!(stats["numRecords"], json!(1));
        assert!(stats["minValues"].get("s").is_none());
    }
}
