//! Decoding one source file into typed batches plus rejected rows.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use datafusion::arrow::array::{RecordBatch, new_null_array};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use strata_project::{ColumnType, CsvOptions, SchemaDrift};

use super::infer::{SAMPLE_ROWS, infer_json, infer_text, normalize_name};
use super::rows::{BadRow, Cell, RowSink, parse_json, parse_text};

/// Opens a source file, decompressing `.gz` (gzip) and `.zst`/`.zstd` (zstd) by extension.
pub fn open_text(path: &Path) -> Result<Box<dyn std::io::Read + Send>, String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    Ok(match ext.as_str() {
        "gz" | "gzip" => Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
            f,
        ))),
        "zst" | "zstd" => Box::new(
            zstd::stream::read::Decoder::new(f).map_err(|e| format!("not a zstd file: {e}"))?,
        ),
        _ => Box::new(f),
    })
}

/// What one file yielded.
#[derive(Debug, Default)]
pub struct FileData {
    /// Loaded rows, typed.
    pub batches: Vec<RecordBatch>,
    /// Rejected rows.
    pub bad: Vec<BadRow>,
    /// Rows read = loaded + bad.
    pub rows_read: i64,
    /// Columns the file has that the source did not, with types inferred
    /// from this file (`schema_drift = "add_columns"`).
    pub new_columns: Vec<(String, ColumnType)>,
    /// Columns of the source the file lacks (read as null).
    pub missing_columns: Vec<String>,
}

/// Hive-style partition values in a file's path (`date=2024-01-01/` →
/// `("date", "2024-01-01")`), keys normalized, outermost first.
pub fn hive_values(rel: &str) -> Vec<(String, String)> {
    let mut parts: Vec<&str> = rel.split(['/', '\\']).collect();
    parts.pop(); // the file name
    parts
        .into_iter()
        .filter_map(|p| p.split_once('='))
        .filter(|(k, _)| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
        .map(|(k, v)| (normalize_name(k), v.to_string()))
        .collect()
}

/// The value a partition folder gives column `name`, if any.
fn partition_value<'a>(partition: &'a [(String, String)], name: &str) -> Option<&'a str> {
    partition
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Values of one unexpected column, sampled for type inference.
#[derive(Default)]
struct Extra {
    name: String,
    text: Vec<String>,
    json: Vec<Value>,
}

fn drift_error(what: &str, names: &[String]) -> String {
    format!(
        "{what} {} (schema_drift = \"fail\": nothing of this batch was loaded; declare the columns, or set schema_drift = \"add_columns\" or \"rescue\")",
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )
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

/// The records of a JSON source file, one JSON text per item: the lines of
/// NDJSON, or the elements of a file holding one JSON array (`[{…}, {…}]`),
/// numbered from 1 either way.
fn json_records(path: &Path) -> Result<Box<dyn Iterator<Item = std::io::Result<String>>>, String> {
    let mut reader = BufReader::new(open_text(path)?);
    let first = loop {
        let buf = reader.fill_buf().map_err(|e| e.to_string())?;
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => break Some(buf[i]),
            None if buf.is_empty() => break None,
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    };
    if first != Some(b'[') {
        return Ok(Box::new(reader.lines()));
    }
    let items: Vec<Value> =
        serde_json::from_reader(reader).map_err(|e| format!("not a valid JSON array: {e}"))?;
    Ok(Box::new(items.into_iter().map(|v| Ok(v.to_string()))))
}

/// Infers NDJSON columns from a sample of lines (keys in the order serde_json keeps them: sorted).
pub fn infer_ndjson(path: &Path) -> Result<Vec<(String, ColumnType)>, String> {
    let mut keys: Vec<String> = vec![];
    let mut rows: Vec<serde_json::Map<String, Value>> = vec![];
    for line in json_records(path)?.take(SAMPLE_ROWS) {
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
    let mut out: Vec<(String, ColumnType)> = vec![];
    for k in &keys {
        let name = normalize_name(k);
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, infer_json(rows.iter().filter_map(|r| r.get(k)))));
        }
    }
    Ok(out)
}

fn csv_reader(
    path: &Path,
    opts: &CsvOptions,
) -> Result<csv::Reader<Box<dyn std::io::Read + Send>>, String> {
    let f = open_text(path)?;
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
    drift: SchemaDrift,
    partition: &[(String, String)],
) -> Result<FileData, String> {
    let mut rdr = csv_reader(path, opts)?;
    let mut sink = if drift == SchemaDrift::Rescue {
        RowSink::rescuing(columns)
    } else {
        RowSink::new(columns)
    };
    let mut record = csv::StringRecord::new();
    // Which field holds each column (usize::MAX: the file lacks it).
    let mut index: Vec<usize> = (0..columns.len()).collect();
    let mut width = columns.len();
    let mut first = true;
    // Header fields that are no column of the source: (field, samples).
    let mut extras: Vec<(usize, Extra)> = vec![];
    let mut missing_columns = vec![];
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
                    None => {
                        index[i] = usize::MAX;
                        if partition_value(partition, name).is_none() {
                            missing.push(name.clone());
                        }
                    }
                }
            }
            for (f, h) in header.iter().enumerate() {
                if !columns.iter().any(|(n, _)| n == h) && !h.is_empty() {
                    extras.push((
                        f,
                        Extra {
                            name: h.clone(),
                            ..Default::default()
                        },
                    ));
                }
            }
            if drift == SchemaDrift::Fail {
                if !missing.is_empty() {
                    return Err(format!(
                        "line {line}: the header has no column {} (header: {})",
                        missing.join(", "),
                        header.join(", ")
                    ));
                }
                if !extras.is_empty() {
                    let names: Vec<String> = extras.iter().map(|(_, e)| e.name.clone()).collect();
                    return Err(format!(
                        "line {line}: {}",
                        drift_error("new columns", &names)
                    ));
                }
            }
            missing_columns = missing;
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
        let is_null = |v: &str| nulls.iter().any(|n| n == v);
        let mut extra = serde_json::Map::new();
        for (f, e) in extras.iter_mut() {
            let v = rec.get(*f).unwrap_or("");
            if is_null(v) {
                continue;
            }
            if drift == SchemaDrift::Rescue {
                extra.insert(e.name.clone(), Value::String(v.to_string()));
            } else if e.text.len() < SAMPLE_ROWS {
                e.text.push(v.to_string());
            }
        }
        sink.push_row_rescuing(
            line,
            || rec.iter().collect::<Vec<_>>().join(&delim),
            |c, t| {
                let v = if index[c] == usize::MAX {
                    partition_value(partition, &columns[c].0).unwrap_or("")
                } else {
                    rec.get(index[c]).unwrap_or("")
                };
                if is_null(v) {
                    Ok(Cell::Null)
                } else {
                    parse_text(v, t).map_err(|e| format!("column {}: {e}", columns[c].0))
                }
            },
            |c| {
                rec.get(index[c])
                    .or_else(|| partition_value(partition, &columns[c].0))
                    .map(|v| Value::String(v.to_string()))
            },
            extra,
        )?;
    }
    sink.flush()?;
    let new_columns = if drift == SchemaDrift::AddColumns {
        extras
            .into_iter()
            .map(|(_, e)| {
                let t = infer_text(e.text.iter().map(String::as_str));
                (e.name, t)
            })
            .collect()
    } else {
        vec![]
    };
    Ok(FileData {
        rows_read: sink.rows_read,
        batches: std::mem::take(&mut sink.batches),
        bad: std::mem::take(&mut sink.bad),
        new_columns,
        missing_columns,
    })
}

/// Decodes an NDJSON file into `columns`; keys that are no column are drift.
pub fn decode_ndjson(
    path: &Path,
    columns: &[(String, ColumnType)],
    drift: SchemaDrift,
    partition: &[(String, String)],
) -> Result<FileData, String> {
    let mut sink = if drift == SchemaDrift::Rescue {
        RowSink::rescuing(columns)
    } else {
        RowSink::new(columns)
    };
    let known: std::collections::HashSet<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    // Unexpected keys, normalized, in order of appearance, with samples.
    let mut extras: Vec<Extra> = vec![];
    // The key each column is read from: its name, or a key that normalizes to it
    // (`customerId` for `customerid`), learnt from the first object that has it.
    let mut key_for: Vec<Option<String>> = vec![None; columns.len()];
    for (i, line) in json_records(path)?.enumerate() {
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
        let mut extra = serde_json::Map::new();
        for (k, v) in &obj {
            let name = normalize_name(k);
            if known.contains(name.as_str()) || v.is_null() {
                continue;
            }
            match drift {
                SchemaDrift::Fail => {
                    return Err(format!(
                        "line {n}: {}",
                        drift_error("new key", std::slice::from_ref(k))
                    ));
                }
                SchemaDrift::Rescue => {
                    extra.insert(k.clone(), v.clone());
                }
                SchemaDrift::AddColumns => {
                    let e = match extras.iter().position(|e| e.name == name) {
                        Some(i) => &mut extras[i],
                        None => {
                            extras.push(Extra {
                                name: name.clone(),
                                ..Default::default()
                            });
                            let last = extras.len() - 1;
                            &mut extras[last]
                        }
                    };
                    if e.json.len() < SAMPLE_ROWS {
                        e.json.push(v.clone());
                    }
                }
            }
        }
        let original = |c: usize| {
            let name = &columns[c].0;
            obj.get(name)
                .or_else(|| {
                    obj.iter()
                        .find(|(k, _)| normalize_name(k) == *name)
                        .map(|(_, v)| v)
                })
                .cloned()
        };
        sink.push_row_rescuing(
            n,
            || line.clone(),
            |c, t| {
                let name = &columns[c].0;
                let value = match &key_for[c] {
                    Some(k) => obj.get(k),
                    None => {
                        let found = if obj.contains_key(name) {
                            Some(name.clone())
                        } else {
                            obj.keys().find(|k| normalize_name(k) == *name).cloned()
                        };
                        let v = found.as_ref().and_then(|k| obj.get(k));
                        key_for[c] = found;
                        v
                    }
                };
                match (value, partition_value(partition, name)) {
                    (None, Some(p)) => parse_text(p, t)
                        .map_err(|e| format!("column {name} (from the folder): {e}")),
                    (None, None) => Ok(Cell::Null),
                    (Some(v), _) => parse_json(v, t).map_err(|e| format!("column {name}: {e}")),
                }
            },
            original,
            extra,
        )?;
    }
    sink.flush()?;
    Ok(FileData {
        rows_read: sink.rows_read,
        batches: std::mem::take(&mut sink.batches),
        bad: std::mem::take(&mut sink.bad),
        new_columns: extras
            .into_iter()
            .map(|e| {
                let t = infer_json(e.json.iter());
                (e.name, t)
            })
            .collect(),
        missing_columns: vec![],
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
    // Normalized names, as for every source (decode_parquet maps them back).
    let fields: Vec<datafusion::arrow::datatypes::Field> = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_name(normalize_name(f.name())))
        .collect();
    Ok(std::sync::Arc::new(
        datafusion::arrow::datatypes::Schema::new(fields),
    ))
}

/// Reads a Parquet file, projecting and casting to `target` by column name.
pub fn decode_parquet(
    path: &Path,
    target: &SchemaRef,
    partition: &[(String, String)],
) -> Result<FileData, String> {
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
            let at = batch.schema().index_of(field.name()).ok().or_else(|| {
                batch
                    .schema()
                    .fields()
                    .iter()
                    .position(|f| normalize_name(f.name()) == *field.name())
            });
            let col = match at.ok_or(()) {
                Ok(i) => {
                    cast_with_options(batch.column(i), field.data_type(), &strict).map_err(|e| {
                        format!(
                            "column {}: a value cannot be read as {}: {e}",
                            field.name(),
                            field.data_type()
                        )
                    })?
                }
                Err(_) => match partition_value(partition, field.name()) {
                    Some(v) => {
                        let text =
                            datafusion::arrow::array::StringArray::from(vec![v; batch.num_rows()]);
                        cast_with_options(&text, field.data_type(), &strict).map_err(|e| {
                            format!(
                                "column {} (from the folder): `{v}` cannot be read as {}: {e}",
                                field.name(),
                                field.data_type()
                            )
                        })?
                    }
                    None => new_null_array(field.data_type(), batch.num_rows()),
                },
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
        let d = decode_csv(
            &p,
            &cols,
            &opts(),
            &[String::new()],
            SchemaDrift::AddColumns,
            &[],
        )
        .expect("decode");
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
        let e = decode_csv(
            &p,
            &[("c".into(), ColumnType::Int64)],
            &opts(),
            &[],
            SchemaDrift::Fail,
            &[],
        )
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
        let d = decode_ndjson(&p, &cols, SchemaDrift::AddColumns, &[]).expect("decode");
        assert_eq!(d.rows_read, 5);
        assert_eq!(d.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
        let lines: Vec<i64> = d.bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![2, 3, 5]);
        assert_eq!(d.bad[1].raw, "{\"id\":3,");
    }

    #[test]
    fn ndjson_keys_are_read_under_their_normalized_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("o.ndjson");
        std::fs::write(&p, "{\"orderId\":1,\"Unit Price\":2.5}\n{\"orderId\":2}\n").expect("write");
        let mut cols = infer_ndjson(&p).expect("infer");
        cols.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            cols,
            vec![
                ("orderid".to_string(), ColumnType::Int64),
                ("unit_price".to_string(), ColumnType::Float64)
            ]
        );
        let d = decode_ndjson(&p, &cols, SchemaDrift::AddColumns, &[]).expect("decode");
        assert_eq!(d.rows_read, 2);
        assert!(d.bad.is_empty());
        let b = &d.batches[0];
        let ids = b.column_by_name("orderid").expect("orderid");
        assert_eq!(
            ids.as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .expect("ints")
                .value(1),
            2
        );
        let prices = b.column_by_name("unit_price").expect("unit_price");
        assert!(datafusion::arrow::array::Array::is_null(prices.as_ref(), 1));
    }

    #[test]
    fn reads_gzip_and_zstd_files() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "id,name\n1,a\n2,b\n";
        let gz = dir.path().join("c.csv.gz");
        let mut e = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).expect("create"),
            flate2::Compression::default(),
        );
        e.write_all(text.as_bytes()).expect("write");
        e.finish().expect("finish");
        let zst = dir.path().join("c.csv.zst");
        std::fs::write(
            &zst,
            zstd::stream::encode_all(text.as_bytes(), 3).expect("zstd"),
        )
        .expect("write");
        let cols = vec![
            ("id".to_string(), ColumnType::Int64),
            ("name".to_string(), ColumnType::Utf8),
        ];
        for p in [gz, zst] {
            let d = decode_csv(
                &p,
                &cols,
                &opts(),
                &[String::new()],
                SchemaDrift::AddColumns,
                &[],
            )
            .expect("decode");
            assert_eq!((d.rows_read, d.bad.len()), (2, 0), "{}", p.display());
            assert_eq!(
                infer_csv(&p, &opts(), &[String::new()]).expect("infer"),
                cols
            );
        }
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

    #[test]
    fn a_json_array_file_is_read_record_by_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.json");
        std::fs::write(
            &p,
            "\n  [{\"id\": 1}, {\"id\": \"x\"},\n {\"id\": 3, \"n\": true}]",
        )
        .expect("write");
        let cols = infer_ndjson(&p).expect("infer");
        assert_eq!(cols[0], ("id".to_string(), ColumnType::Utf8));
        let cols = vec![("id".to_string(), ColumnType::Int64)];
        let d = decode_ndjson(&p, &cols, SchemaDrift::AddColumns, &[]).expect("decode");
        assert_eq!(d.rows_read, 3);
        assert_eq!(d.bad.len(), 1);
        assert_eq!(d.bad[0].line, 2, "the record's position in the array");
        assert_eq!(d.new_columns, vec![("n".to_string(), ColumnType::Boolean)]);
        std::fs::write(&p, "[{\"id\": 1},").expect("write");
        assert!(
            decode_ndjson(&p, &cols, SchemaDrift::AddColumns, &[])
                .expect_err("truncated")
                .contains("not a valid JSON array")
        );
    }

    #[test]
    fn hive_folders_give_values() {
        assert_eq!(
            hive_values("data/orders/Date=2024-01-01/region=eu/part-0.csv"),
            vec![
                ("date".to_string(), "2024-01-01".to_string()),
                ("region".to_string(), "eu".to_string())
            ]
        );
        assert!(
            hive_values("data/a=b.csv").is_empty(),
            "the file name is no folder"
        );
    }
}
