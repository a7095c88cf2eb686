//! Decoding one source file into typed batches plus rejected rows.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use datafusion::arrow::array::{RecordBatch, new_null_array};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use strata_project::{ColumnType, CsvOptions};

use super::infer::{SAMPLE_ROWS, infer_json, infer_text, normalize_name};
use super::rows::{BadRow, Cell, RowSink, parse_json, parse_text};

/// What one file yielded.
#[derive(Debug, Default)]
pub struct FileData {
    /// Loaded rows, typed.
    pub batches: Vec<RecordBatch>,
    /// Rejected rows.
    pub bad: Vec<BadRow>,
    /// Rows read = loaded + bad.
    pub rows_read: i64,
}

/// Reads a CSV file's header (or the column count) and infers types from a sample.
pub fn infer_csv(
    path: &Path,
    opts: &CsvOptions,
    nulls: &[String],
) -> Result<Vec<(String, ColumnType)>, String> {
    let mut rdr = csv_reader(path, opts)?;
    let mut records = rdr.records();
    let header: Vec<String> = if opts.header {
        match records.next() {
            Some(Ok(h)) => h.iter().map(normalize_name).collect(),
            Some(Err(e)) => return Err(format!("cannot read the header: {e}")),
            None => return Err("the file is empty: no header to infer columns from".into()),
        }
    } else {
        vec![]
    };
    let sample: Vec<csv::StringRecord> = records.take(SAMPLE_ROWS).filter_map(Result::ok).collect();
    let width = if header.is_empty() {
        sample.iter().map(|r| r.len()).max().unwrap_or(0)
    } else {
        header.len()
    };
    if width == 0 {
        return Err("no columns found to infer a schema from".into());
    }
    Ok((0..width)
        .map(|i| {
            let name = header
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("column_{}", i + 1));
            let vals = sample
                .iter()
                .filter_map(|r| r.get(i))
                .filter(|v| !nulls.iter().any(|n| n == v));
            (name, infer_text(vals))
        })
        .collect())
}

/// Infers NDJSON columns (keys in first-seen order) from a sample of lines.
pub fn infer_ndjson(path: &Path) -> Result<Vec<(String, ColumnType)>, String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let mut keys: Vec<String> = vec![];
    let mut rows: Vec<serde_json::Map<String, Value>> = vec![];
    for line in BufReader::new(f).lines().take(SAMPLE_ROWS) {
        let line = line.map_err(|e| e.to_string())?;
        if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(&line) {
            for k in o.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
            rows.push(o);
        }
    }
    if keys.is_empty() {
        return Err("no JSON objects found to infer a schema from".into());
    }
    Ok(keys
        .iter()
        .map(|k| (k.clone(), infer_json(rows.iter().filter_map(|r| r.get(k)))))
        .collect())
}

fn csv_reader(path: &Path, opts: &CsvOptions) -> Result<csv::Reader<File>, String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(opts.delimiter)
        .quote(opts.quote)
        .from_reader(f))
}

/// Decodes a CSV file into `columns`.
pub fn decode_csv(
    path: &Path,
    columns: &[(String, ColumnType)],
    opts: &CsvOptions,
    nulls: &[String],
) -> Result<FileData, String> {
    let mut rdr = csv_reader(path, opts)?;
    let mut sink = RowSink::new(columns);
    let mut record = csv::StringRecord::new();
    // Which field holds each column.
    let mut index: Vec<usize> = (0..columns.len()).collect();
    let mut width = columns.len();
    let mut first = true;
    loop {
        let line = rdr.position().line() as i64;
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| p.line() as i64).unwrap_or(line);
                sink.reject(line, String::new(), format!("unreadable CSV record: {e}"));
                continue;
            }
        }
        let line = record.position().map(|p| p.line() as i64).unwrap_or(line);
        if first && opts.header {
            first = false;
            let header: Vec<String> = record.iter().map(normalize_name).collect();
            width = header.len();
            let mut missing = vec![];
            for (i, (name, _)) in columns.iter().enumerate() {
                match header.iter().position(|h| h == name) {
                    Some(p) => index[i] = p,
                    None => missing.push(name.as_str()),
                }
            }
            if !missing.is_empty() {
                return Err(format!(
                    "line {line}: the header has no column {} (header: {})",
                    missing.join(", "),
                    header.join(", ")
                ));
            }
            continue;
        }
        first = false;
        if record.len() == 1 && record.get(0).is_some_and(str::is_empty) {
            continue; // blank line
        }
        let delim = char::from(opts.delimiter).to_string();
        if record.len() != width {
            let raw = record.iter().collect::<Vec<_>>().join(&delim);
            sink.reject(
                line,
                raw,
                format!("expected {width} fields, found {}", record.len()),
            );
            continue;
        }
        let rec = &record;
        sink.push_row(
            line,
            || rec.iter().collect::<Vec<_>>().join(&delim),
            |c, t| {
                let v = rec.get(index[c]).unwrap_or("");
                if nulls.iter().any(|n| n == v) {
                    Ok(Cell::Null)
                } else {
                    parse_text(v, t).map_err(|e| format!("column {}: {e}", columns[c].0))
                }
            },
        )?;
    }
    sink.flush()?;
    Ok(FileData {
        rows_read: sink.rows_read,
        batches: std::mem::take(&mut sink.batches),
        bad: std::mem::take(&mut sink.bad),
    })
}

/// Decodes an NDJSON file into `columns` (keys not declared are ignored).
pub fn decode_ndjson(path: &Path, columns: &[(String, ColumnType)]) -> Result<FileData, String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let mut sink = RowSink::new(columns);
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let n = i as i64 + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                sink.reject(n, String::new(), format!("unreadable line: {e}"));
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let obj = match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(o)) => o,
            Ok(other) => {
                sink.reject(
                    n,
                    line.clone(),
                    format!("expected a JSON object, found {}", json_kind(&other)),
                );
                continue;
            }
            Err(e) => {
                sink.reject(n, line.clone(), format!("invalid JSON: {e}"));
                continue;
            }
        };
        sink.push_row(
            n,
            || line.clone(),
            |c, t| match obj.get(&columns[c].0) {
                None => Ok(Cell::Null),
                Some(v) => parse_json(v, t).map_err(|e| format!("column {}: {e}", columns[c].0)),
            },
        )?;
    }
    sink.flush()?;
    Ok(FileData {
        rows_read: sink.rows_read,
        batches: std::mem::take(&mut sink.batches),
        bad: std::mem::take(&mut sink.bad),
    })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The Arrow schema stored in a Parquet file.
pub fn parquet_schema(path: &Path) -> Result<SchemaRef, String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| e.to_string())?;
    Ok(b.schema().clone())
}

/// Reads a Parquet file, projecting and casting to `target` by column name.
pub fn decode_parquet(path: &Path, target: &SchemaRef) -> Result<FileData, String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .and_then(|b| b.with_batch_size(super::rows::BATCH_ROWS).build())
        .map_err(|e| e.to_string())?;
    let mut out = FileData::default();
    // Fail rather than turn a value that does not convert into a null.
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let mut cols = Vec::with_capacity(target.fields().len());
        for field in target.fields() {
            let col = match batch.schema().index_of(field.name()) {
                Ok(i) => {
                    cast_with_options(batch.column(i), field.data_type(), &strict).map_err(|e| {
                        format!(
                            "column {}: a value cannot be read as {}: {e}",
                            field.name(),
                            field.data_type()
                        )
                    })?
                }
                Err(_) => new_null_array(field.data_type(), batch.num_rows()),
            };
            cols.push(col);
        }
        let b = RecordBatch::try_new(target.clone(), cols).map_err(|e| e.to_string())?;
        out.rows_read += b.num_rows() as i64;
        out.batches.push(b);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> CsvOptions {
        CsvOptions {
            header: true,
            delimiter: b',',
            quote: b'"',
        }
    }

    #[test]
    fn csv_short_lines_and_bad_values_are_rejected_with_their_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("c.csv");
        std::fs::write(
            &p,
            "id,name,born\n1,ann,2020-01-01\n2,bob\nx,cy,2020-01-02\n3,\"d, e\",\n",
        )
        .expect("write");
        let cols = vec![
            ("id".to_string(), ColumnType::Int64),
            ("name".into(), ColumnType::Utf8),
            ("born".into(), ColumnType::Date),
        ];
        let d = decode_csv(&p, &cols, &opts(), &[String::new()]).expect("decode");
        assert_eq!(d.rows_read, 4);
        assert_eq!(d.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
        assert_eq!(d.bad.len(), 2);
        assert_eq!(
            (d.bad[0].line, d.bad[0].error.as_str()),
            (3, "expected 3 fields, found 2")
        );
        assert_eq!(d.bad[1].line, 4);
        assert!(d.bad[1].error.contains("column id"), "{}", d.bad[1].error);
    }

    #[test]
    fn csv_header_must_hold_declared_columns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("c.csv");
        std::fs::write(&p, "a,b\n1,2\n").expect("write");
        let e = decode_csv(&p, &[("c".into(), ColumnType::Int64)], &opts(), &[])
            .expect_err("missing column");
        assert!(e.contains("no column c"), "{e}");
    }

    #[test]
    fn ndjson_keeps_bad_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("o.ndjson");
        std::fs::write(
            &p,
            "{\"id\":1,\"q\":2}\n{\"id\":2,\"q\":\"three\"}\n{\"id\":3,\n\n[1]\n{\"id\":4}\n",
        )
        .expect("write");
        let cols = vec![
            ("id".to_string(), ColumnType::Int64),
            ("q".into(), ColumnType::Int64),
        ];
        let d = decode_ndjson(&p, &cols).expect("decode");
        assert_eq!(d.rows_read, 5);
        assert_eq!(d.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
        let lines: Vec<i64> = d.bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![2, 3, 5]);
        assert_eq!(d.bad[1].raw, "{\"id\":3,");
    }

    #[test]
    fn infers_csv_and_ndjson() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("c.csv");
        std::fs::write(&p, "Id,Amount\n1,2.5\n2,\n").expect("write");
        assert_eq!(
            infer_csv(&p, &opts(), &[String::new()]).expect("infer"),
            vec![
                ("id".to_string(), ColumnType::Int64),
                ("amount".to_string(), ColumnType::Float64)
            ]
        );
        let p = dir.path().join("o.ndjson");
        std::fs::write(&p, "{\"a\":1,\"b\":\"x\"}\n{\"c\":true}\n").expect("write");
        assert_eq!(
            infer_ndjson(&p).expect("infer"),
            vec![
                ("a".to_string(), ColumnType::Int64),
                ("b".to_string(), ColumnType::Utf8),
                ("c".to_string(), ColumnType::Boolean)
            ]
        );
    }
}
