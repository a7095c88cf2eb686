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
#[derive(Default, Clone)]
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
    let mut records = std::iter::from_fn(|| {
        let mut r = csv::StringRecord::new();
        match read_record(&mut rdr, &mut r) {
            Ok(true) => Some(Ok(r)),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    });
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
    Ok(record_reader(opts, f))
}

/// A CSV reader over `r`. Records end at `\n` only: the csv crate's default
/// (`\r`, `\n` or `\r\n`) consumes a CRLF's `\n` at the start of the *next*
/// record, so every record after the first of a CRLF file would report the
/// line before its own. Read records with [`read_record`], which removes the
/// `\r` left at the end of a CRLF record's last field.
fn record_reader<R: std::io::Read>(opts: &CsvOptions, r: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(opts.delimiter)
        .quote(opts.quote)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(r)
}

/// Reads the next record of a [`record_reader`], without the `\r` of a CRLF
/// line end.
fn read_record<R: std::io::Read>(
    rdr: &mut csv::Reader<R>,
    record: &mut csv::StringRecord,
) -> csv::Result<bool> {
    let more = rdr.read_record(record)?;
    let n = record.len();
    if let Some(last) = record.get(n.wrapping_sub(1))
        && let Some(kept) = last.strip_suffix('\r')
    {
        let kept = kept.to_string();
        record.truncate(n - 1);
        record.push_field(&kept);
    }
    Ok(more)
}

/// Where each column is in a CSV file's records, from its header.
#[derive(Clone)]
struct Layout {
    /// Which field holds each column (`usize::MAX`: the file lacks it).
    index: Vec<usize>,
    /// Fields per record.
    width: usize,
    /// Header fields that are no column of the source: (field, samples).
    extras: Vec<(usize, Extra)>,
    /// Columns of the source the file lacks.
    missing: Vec<String>,
}

impl Layout {
    /// No header: the columns in order.
    fn positional(columns: &[(String, ColumnType)]) -> Self {
        Self {
            index: (0..columns.len()).collect(),
            width: columns.len(),
            extras: vec![],
            missing: vec![],
        }
    }

    /// From the header record at `line`.
    fn from_header(
        record: &csv::StringRecord,
        line: i64,
        columns: &[(String, ColumnType)],
        drift: SchemaDrift,
        partition: &[(String, String)],
    ) -> Result<Self, String> {
        let header: Vec<String> = record.iter().map(normalize_name).collect();
        let mut index = vec![usize::MAX; columns.len()];
        let mut missing = vec![];
        for (i, (name, _)) in columns.iter().enumerate() {
            match header.iter().position(|h| h == name) {
                Some(p) => index[i] = p,
                None => {
                    if partition_value(partition, name).is_none() {
                        missing.push(name.clone());
                    }
                }
            }
        }
        let mut extras = vec![];
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
        Ok(Self {
            index,
            width: header.len(),
            extras,
            missing,
        })
    }

    /// The types of the extra columns (`schema_drift = "add_columns"`).
    fn new_columns(self, drift: SchemaDrift) -> Vec<(String, ColumnType)> {
        if drift != SchemaDrift::AddColumns {
            return vec![];
        }
        self.extras
            .into_iter()
            .map(|(_, e)| {
                let t = infer_text(e.text.iter().map(String::as_str));
                (e.name, t)
            })
            .collect()
    }
}

/// How a source's CSV files are read (the source's settings, borrowed).
#[derive(Clone, Copy)]
pub struct CsvRead<'a> {
    /// The source's columns.
    pub columns: &'a [(String, ColumnType)],
    /// Delimiter, quote, header.
    pub opts: &'a CsvOptions,
    /// Strings read as null.
    pub nulls: &'a [String],
    /// Schema drift policy.
    pub drift: SchemaDrift,
    /// Hive partition values of the file's path.
    pub partition: &'a [(String, String)],
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
    let how = CsvRead {
        columns,
        opts,
        nulls,
        drift,
        partition,
    };
    let mut rdr = csv_reader(path, opts)?;
    let (mut data, layout) = decode_records(&mut rdr, how, None)?;
    data.missing_columns = layout.missing.clone();
    data.new_columns = layout.new_columns(drift);
    Ok(data)
}

/// Decodes the records of `rdr` into the source's columns. With `layout`,
/// the reader is past the header (or the file has none); without it, the
/// first record is the header when the source says so.
fn decode_records<R: std::io::Read>(
    rdr: &mut csv::Reader<R>,
    how: CsvRead<'_>,
    layout: Option<Layout>,
) -> Result<(FileData, Layout), String> {
    let CsvRead {
        columns,
        opts,
        nulls,
        drift,
        partition,
    } = how;
    let mut sink = if drift == SchemaDrift::Rescue {
        RowSink::rescuing(columns)
    } else {
        RowSink::new(columns)
    };
    let mut record = csv::StringRecord::new();
    let mut header_pending = layout.is_none() && opts.header;
    let mut layout = layout.unwrap_or_else(|| Layout::positional(columns));
    let delim = char::from(opts.delimiter).to_string();
    let is_null = |v: &str| nulls.iter().any(|n| n == v);
    loop {
        let line = rdr.position().line() as i64;
        match read_record(rdr, &mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| p.line() as i64).unwrap_or(line);
                sink.reject(line, String::new(), format!("unreadable CSV record: {e}"));
                continue;
            }
        }
        let line = record.position().map(|p| p.line() as i64).unwrap_or(line);
        if header_pending {
            header_pending = false;
            layout = Layout::from_header(&record, line, columns, drift, partition)?;
            continue;
        }
        if record.len() == 1 && record.get(0).is_some_and(str::is_empty) {
            continue; // blank line
        }
        let width = layout.width;
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
        let mut extra = serde_json::Map::new();
        for (f, e) in layout.extras.iter_mut() {
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
        let index = &layout.index;
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
    Ok((
        FileData {
            rows_read: sink.rows_read,
            batches: std::mem::take(&mut sink.batches),
            bad: std::mem::take(&mut sink.bad),
            new_columns: vec![],
            missing_columns: vec![],
        },
        layout,
    ))
}

/// Files at least this large are split into chunks decoded in parallel.
pub const PARALLEL_MIN_BYTES: u64 = 32 << 20;
/// The size of one chunk.
const CHUNK_BYTES: u64 = 16 << 20;

/// As [`decode_csv`], but an uncompressed file of at least
/// [`PARALLEL_MIN_BYTES`] is cut at line ends into chunks that `threads`
/// threads decode at once. Same rows, same order, same line numbers. A cut
/// that falls inside a quoted value (a line break in a field: an odd number of
/// quote characters before it) is detected, and the file is then decoded in
/// one pass instead.
pub fn decode_csv_parallel(
    path: &Path,
    how: CsvRead<'_>,
    threads: usize,
) -> Result<FileData, String> {
    let (min_bytes, chunk_bytes) = chunk_sizes();
    decode_in_chunks(path, how, threads, min_bytes, chunk_bytes)
}

/// [`chunked`] without a sink, falling back to one pass where it must.
fn decode_in_chunks(
    path: &Path,
    how: CsvRead<'_>,
    threads: usize,
    min_bytes: u64,
    chunk_bytes: u64,
) -> Result<FileData, String> {
    match chunked(path, how, threads, min_bytes, chunk_bytes, None)? {
        Some(data) => Ok(data),
        None => decode_csv(
            path,
            how.columns,
            how.opts,
            how.nulls,
            how.drift,
            how.partition,
        ),
    }
}

/// Where [`decode_csv_streaming`] hands each decoded chunk's rows: called on
/// the decoding thread with that thread's number (`0..threads`).
pub type ChunkSink<'s> = &'s (dyn Fn(usize, Vec<RecordBatch>) -> Result<(), String> + Sync);

/// As [`decode_csv_parallel`], but each chunk's rows go to `sink` as soon as
/// they are decoded (so a large file is never held in memory); the returned
/// [`FileData`] has no batches. `None` (before or after rows went to the
/// sink) when the file cannot be streamed: too small or compressed, a header
/// that does not map one to one onto the source's columns, or a cut inside a
/// quoted value. The caller then discards what the sink got and decodes the
/// file the usual way.
pub fn decode_csv_streaming(
    path: &Path,
    how: CsvRead<'_>,
    threads: usize,
    sink: ChunkSink<'_>,
) -> Result<Option<FileData>, String> {
    let (min_bytes, chunk_bytes) = chunk_sizes();
    chunked(path, how, threads, min_bytes, chunk_bytes, Some(sink))
}

/// [`PARALLEL_MIN_BYTES`] and [`CHUNK_BYTES`], or, for tests, a chunk size in
/// `STRATA_CSV_CHUNK_BYTES` (files of two chunks or more are then cut).
fn chunk_sizes() -> (u64, u64) {
    match std::env::var("STRATA_CSV_CHUNK_BYTES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(c) if c > 0 => (2 * c, c),
        _ => (PARALLEL_MIN_BYTES, CHUNK_BYTES),
    }
}

/// Decodes a file in chunks on `threads` threads. `None` where the file must
/// be decoded in one pass instead. With a sink, the chunks' rows go there
/// and only the layout of the header is accepted that maps the file's fields
/// one to one onto the source's columns.
fn chunked(
    path: &Path,
    how: CsvRead<'_>,
    threads: usize,
    min_bytes: u64,
    chunk_bytes: u64,
    sink: Option<ChunkSink<'_>>,
) -> Result<Option<FileData>, String> {
    let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    let compressed = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["gz", "gzip", "zst", "zstd"].contains(&e.to_ascii_lowercase().as_str()));
    if threads < 2 || size < min_bytes || compressed {
        return Ok(None);
    }
    // The header, and where the data starts.
    let mut rdr = csv_reader(path, how.opts)?;
    let (layout, data_start, header_lines) = if how.opts.header {
        let mut rec = csv::StringRecord::new();
        match read_record(&mut rdr, &mut rec) {
            Ok(true) => {}
            _ => return Ok(None),
        }
        let layout = Layout::from_header(&rec, 1, how.columns, how.drift, how.partition)?;
        let pos = rdr.position();
        (layout, pos.byte(), pos.line() as i64 - 1)
    } else {
        (Layout::positional(how.columns), 0, 0)
    };
    drop(rdr);
    if sink.is_some()
        && (!layout.extras.is_empty()
            || !layout.missing.is_empty()
            || layout.index.iter().any(|&i| i >= layout.width))
    {
        return Ok(None);
    }
    let bounds = chunk_bounds(path, data_start, size, chunk_bytes)?;
    let quote = how.opts.quote;
    let next = std::sync::atomic::AtomicUsize::new(0);
    type Chunk = Result<(FileData, Layout, i64, u64), String>;
    let results: std::sync::Mutex<Vec<Option<Chunk>>> =
        std::sync::Mutex::new((0..bounds.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for worker in 0..threads.min(bounds.len()) {
            let (next, results, bounds, layout) = (&next, &results, &bounds, &layout);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(from, to)) = bounds.get(i) else {
                        break;
                    };
                    let mut r = decode_chunk(path, from, to, quote, how, layout.clone());
                    if let (Some(sink), Ok((data, ..))) = (sink, &mut r)
                        && let Err(e) = sink(worker, std::mem::take(&mut data.batches))
                    {
                        r = Err(e);
                    }
                    let failed = r.is_err();
                    if let Ok(mut all) = results.lock() {
                        all[i] = Some(r);
                    }
                    if failed && sink.is_some() {
                        // Stop early: the caller discards the whole file.
                        next.store(usize::MAX / 2, std::sync::atomic::Ordering::Relaxed);
                        break;
                    }
                }
            });
        }
    });
    let chunks = results
        .into_inner()
        .map_err(|_| "a decoding thread failed".to_string())?;
    let mut out = FileData::default();
    let mut merged = layout;
    let mut lines_before = header_lines;
    let mut quotes_before: u64 = 0;
    for (i, c) in chunks.into_iter().enumerate() {
        let (data, chunk_layout, lines, quotes) =
            c.ok_or_else(|| format!("chunk {i} was not decoded"))??;
        if quotes_before % 2 == 1 {
            return Ok(None); // the cut fell inside a quoted value
        }
        out.rows_read += data.rows_read;
        out.batches.extend(data.batches);
        out.bad.extend(data.bad.into_iter().map(|mut b| {
            b.line += lines_before;
            b
        }));
        for ((_, into), (_, from)) in merged.extras.iter_mut().zip(chunk_layout.extras) {
            let room = SAMPLE_ROWS.saturating_sub(into.text.len());
            into.text.extend(from.text.into_iter().take(room));
        }
        lines_before += lines;
        quotes_before += quotes;
    }
    out.missing_columns = merged.missing.clone();
    out.new_columns = merged.new_columns(how.drift);
    Ok(Some(out))
}

/// Byte ranges `[from, to)` of about `chunk` bytes from `start`, each ending
/// just after a line break (the last at the end of the file).
fn chunk_bounds(path: &Path, start: u64, size: u64, chunk: u64) -> Result<Vec<(u64, u64)>, String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    let mut out = vec![];
    let mut from = start;
    let mut buf = vec![0u8; 64 << 10];
    while from < size {
        let mut to = from + chunk;
        if to >= size {
            out.push((from, size));
            break;
        }
        f.seek(SeekFrom::Start(to)).map_err(|e| e.to_string())?;
        loop {
            let n = f.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                to = size;
                break;
            }
            if let Some(p) = buf[..n].iter().position(|&b| b == b'\n') {
                to += p as u64 + 1;
                break;
            }
            to += n as u64;
        }
        out.push((from, to));
        from = to;
    }
    Ok(out)
}

/// Decodes bytes `[from, to)` of a file: the data, the layout's samples, the
/// number of line breaks and of quote characters in the chunk.
fn decode_chunk(
    path: &Path,
    from: u64,
    to: u64,
    quote: u8,
    how: CsvRead<'_>,
    layout: Layout,
) -> Result<(FileData, Layout, i64, u64), String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    f.seek(SeekFrom::Start(from)).map_err(|e| e.to_string())?;
    let mut bytes = vec![0u8; usize::try_from(to - from).map_err(|e| e.to_string())?];
    f.read_exact(&mut bytes).map_err(|e| e.to_string())?;
    let lines = bytes.iter().filter(|&&b| b == b'\n').count() as i64;
    let quotes = bytes.iter().filter(|&&b| b == quote).count() as u64;
    if vectorizable(&how, &layout)
        && let Some(data) = decode_text_vectorized(&bytes, &how, &layout)
    {
        return Ok((data, layout, lines, quotes));
    }
    let mut rdr = record_reader(how.opts, bytes.as_slice());
    let (data, layout) = decode_records(&mut rdr, how, Some(layout))?;
    Ok((data, layout, lines, quotes))
}

/// Whether arrow's vectorized CSV reader, splitting records into text
/// columns, gives what the row-by-row path gives for a chunk: the null marker
/// is the default empty field (arrow's default too), and the file's fields map
/// one to one onto the source's columns (no new, missing or partition columns,
/// nothing rescued). Typed columns are then converted value by value with the
/// row path's own parser ([`super::rows::typed_array`]).
fn vectorizable(how: &CsvRead<'_>, layout: &Layout) -> bool {
    how.drift != SchemaDrift::Rescue
        && matches!(how.nulls, [n] if n.is_empty())
        && layout.width > 1
        && layout.extras.is_empty()
        && layout.missing.is_empty()
        && layout.index.iter().all(|&i| i < layout.width)
}

/// Decodes a chunk with arrow's CSV reader into text columns, then converts
/// the typed ones. `None` when a record does not fit (a wrong field count, a
/// blank line) or a value does not parse: the row-by-row path then decodes
/// the chunk and accounts for every record (quarantining the bad ones).
fn decode_text_vectorized(bytes: &[u8], how: &CsvRead<'_>, layout: &Layout) -> Option<FileData> {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let fields: Vec<Field> = (0..layout.width)
        .map(|i| Field::new(format!("f{i}"), DataType::Utf8, true))
        .collect();
    let reader =
        datafusion::arrow::csv::ReaderBuilder::new(std::sync::Arc::new(Schema::new(fields)))
            .with_header(false)
            .with_delimiter(how.opts.delimiter)
            .with_quote(how.opts.quote)
            .with_projection(layout.index.clone())
            .with_batch_size(super::rows::BATCH_ROWS)
            .build(std::io::Cursor::new(bytes))
            .ok()?;
    let schema = super::rows::schema_of(how.columns);
    let mut out = FileData::default();
    for batch in reader {
        let batch = batch.ok()?;
        out.rows_read += batch.num_rows() as i64;
        let columns = batch
            .columns()
            .iter()
            .zip(how.columns)
            .map(|(c, (_, t))| {
                let text = c
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::StringArray>()?;
                super::rows::typed_array(text, *t)
            })
            .collect::<Option<Vec<_>>>()?;
        out.batches
            .push(RecordBatch::try_new(schema.clone(), columns).ok()?);
    }
    Some(out)
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

    fn rows_of(d: &FileData) -> Vec<String> {
        let mut out = vec![];
        for b in &d.batches {
            for r in 0..b.num_rows() {
                let cells: Vec<String> = b
                    .columns()
                    .iter()
                    .map(|c| {
                        datafusion::arrow::util::display::array_value_to_string(c, r)
                            .unwrap_or_default()
                    })
                    .collect();
                out.push(cells.join("|"));
            }
        }
        out
    }

    #[test]
    fn text_columns_decode_vectorized_exactly_as_row_by_row() {
        use datafusion::arrow::compute::concat_batches;
        let dir = tempfile::tempdir().expect("tempdir");
        // Columns in another order than the file's; quoted delimiters, doubled
        // quotes, empty fields (null), spaces kept.
        let cols = vec![
            ("note".to_string(), ColumnType::Utf8),
            ("id".into(), ColumnType::Utf8),
            ("code".into(), ColumnType::Utf8),
        ];
        let o = opts();
        let nulls = [String::new()];
        let how = CsvRead {
            columns: &cols,
            opts: &o,
            nulls: &nulls,
            drift: SchemaDrift::AddColumns,
            partition: &[],
        };
        let mut text = String::from("id,code,note\n");
        for i in 0..5000 {
            match i % 7 {
                0 => text.push_str(&format!("{i},,\"say \"\"hi\"\", {i}\"\n")),
                1 => text.push_str(&format!("{i}, c{i} ,\n")),
                _ => text.push_str(&format!("{i},c{i},plain {i}\n")),
            }
        }
        let p = dir.path().join("text.csv");
        std::fs::write(&p, &text).expect("write");
        let one = decode_csv(&p, &cols, &o, &nulls, SchemaDrift::AddColumns, &[]).expect("one");
        let schema = super::super::rows::schema_of(&cols);
        let all = |d: &FileData| concat_batches(&schema, &d.batches).expect("concat");
        // The vectorized reader takes these chunks (it is not a fallback).
        let header_end = text.find('\n').expect("header") + 1;
        let layout = Layout::from_header(
            &csv::StringRecord::from(vec!["id", "code", "note"]),
            1,
            &cols,
            SchemaDrift::AddColumns,
            &[],
        )
        .expect("layout");
        assert!(vectorizable(&how, &layout));
        let fast = decode_text_vectorized(&text.as_bytes()[header_end..], &how, &layout)
            .expect("vectorized");
        assert_eq!(fast.rows_read, one.rows_read);
        assert_eq!(all(&fast), all(&one));
        let chunked = decode_in_chunks(&p, how, 3, 0, 4096).expect("chunked");
        assert_eq!(chunked.rows_read, 5000);
        assert_eq!(all(&chunked), all(&one));
        // CRLF line ends too.
        let crlf = text.replace('\n', "\r\n");
        std::fs::write(&p, &crlf).expect("write");
        let one_crlf =
            decode_csv(&p, &cols, &o, &nulls, SchemaDrift::AddColumns, &[]).expect("one");
        let fast = decode_text_vectorized(&crlf.as_bytes()[header_end + 1..], &how, &layout)
            .expect("vectorized");
        assert_eq!(all(&fast), all(&one_crlf));
        assert_eq!(all(&fast), all(&one));
        // In a CRLF file a quarantined row names its own line too.
        let short_crlf = crlf.replacen("3,c3,plain 3\r\n", "3,c3\r\n", 1);
        std::fs::write(&p, &short_crlf).expect("write");
        let one = decode_csv(&p, &cols, &o, &nulls, SchemaDrift::AddColumns, &[]).expect("one");
        let chunked = decode_in_chunks(&p, how, 3, 0, 4096).expect("chunked");
        assert_eq!((one.bad[0].line, chunked.bad[0].line), (5, 5));
        assert_eq!(one.bad[0].raw, "3,c3");
        assert_eq!(all(&chunked), all(&one));
        assert_eq!(chunked.rows_read, 5000);
        // A short record: that chunk goes row by row, the row is quarantined
        // with its line, every other row loads.
        let short = text.replacen("3,c3,plain 3\n", "3,c3\n", 1);
        std::fs::write(&p, &short).expect("write");
        assert!(decode_text_vectorized(&short.as_bytes()[header_end..], &how, &layout).is_none());
        let chunked = decode_in_chunks(&p, how, 3, 0, 4096).expect("chunked");
        assert_eq!(chunked.rows_read, 5000);
        assert_eq!(
            chunked.batches.iter().map(|b| b.num_rows()).sum::<usize>(),
            4999
        );
        assert_eq!(chunked.bad.len(), 1);
        let one = decode_csv(&p, &cols, &o, &nulls, SchemaDrift::AddColumns, &[]).expect("one");
        assert_eq!((chunked.bad[0].line, one.bad[0].line), (5, 5));
    }

    #[test]
    fn typed_columns_decode_vectorized_exactly_as_row_by_row() {
        use datafusion::arrow::compute::concat_batches;
        let dir = tempfile::tempdir().expect("tempdir");
        let cols = vec![
            ("id".to_string(), ColumnType::Int64),
            ("amount".into(), ColumnType::Decimal(10, 2)),
            ("day".into(), ColumnType::Date),
            ("ok".into(), ColumnType::Boolean),
            ("at".into(), ColumnType::Timestamp),
            ("ratio".into(), ColumnType::Float64),
            ("note".into(), ColumnType::Utf8),
        ];
        let o = opts();
        let nulls = [String::new()];
        let how = CsvRead {
            columns: &cols,
            opts: &o,
            nulls: &nulls,
            drift: SchemaDrift::AddColumns,
            partition: &[],
        };
        let header = "note,ratio,at,ok,day,amount,id";
        let mut text = format!("{header}\n");
        for i in 0..3000 {
            match i % 5 {
                // Spaces around values, as the row path trims them.
                0 => text.push_str(&format!(
                    "n{i}, 0.5 , 2024-01-02 10:00:00 , yes , 2024-03-0{} , {i}.5 , {i} \n",
                    i % 9 + 1
                )),
                // Empty fields are null.
                1 => text.push_str(&format!(",,,,,,{i}\n")),
                // Other accepted spellings: a whole double for a bigint, RFC 3339 with an offset.
                2 => text.push_str(&format!(
                    "\"q, {i}\",1e3,2024-01-02T10:00:00+02:00,F,2024-12-31,-{i},{i}.0\n"
                )),
                _ => text.push_str(&format!(
                    "n{i},{i},2024-01-02T10:00:00.123456,true,2024-01-01,{i}.25,{i}\n"
                )),
            }
        }
        let p = dir.path().join("typed.csv");
        std::fs::write(&p, &text).expect("write");
        let one = decode_csv(&p, &cols, &o, &nulls, SchemaDrift::AddColumns, &[]).expect("one");
        assert!(one.bad.is_empty(), "{:?}", one.bad.first());
        let schema = super::super::rows::schema_of(&cols);
        let all = |d: &FileData| concat_batches(&schema, &d.batches).expect("concat");
        let header_end = text.find('\n').expect("header") + 1;
        let names: Vec<&str> = header.split(',').collect();
        let layout = Layout::from_header(
            &csv::StringRecord::from(names),
            1,
            &cols,
            SchemaDrift::AddColumns,
            &[],
        )
        .expect("layout");
        assert!(vectorizable(&how, &layout));
        let fast = decode_text_vectorized(&text.as_bytes()[header_end..], &how, &layout)
            .expect("vectorized");
        assert_eq!(fast.rows_read, one.rows_read);
        assert_eq!(all(&fast), all(&one));
        let chunked = decode_in_chunks(&p, how, 3, 0, 8192).expect("chunked");
        assert_eq!(all(&chunked), all(&one));
        // A value that does not parse: that chunk goes row by row, the row is
        // quarantined with its line and error, every other row loads.
        let bad = text.replacen(",2024-01-01,3.25,3\n", ",2024-01-01,3.25,three\n", 1);
        std::fs::write(&p, &bad).expect("write");
        assert!(decode_text_vectorized(&bad.as_bytes()[header_end..], &how, &layout).is_none());
        let chunked = decode_in_chunks(&p, how, 3, 0, 8192).expect("chunked");
        let one = decode_csv(&p, &cols, &o, &nulls, SchemaDrift::AddColumns, &[]).expect("one");
        assert_eq!(chunked.rows_read, 3000);
        assert_eq!(chunked.bad.len(), 1);
        assert_eq!((chunked.bad[0].line, one.bad[0].line), (5, 5));
        assert!(
            chunked.bad[0].error.contains("three"),
            "{}",
            chunked.bad[0].error
        );
        assert_eq!(all(&chunked), all(&one));
    }

    #[test]
    fn chunked_csv_decoding_matches_one_pass_even_across_quoted_line_breaks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cols = vec![
            ("id".to_string(), ColumnType::Int64),
            ("note".into(), ColumnType::Utf8),
            ("amount".into(), ColumnType::Decimal(15, 2)),
        ];
        let o = opts();
        let nulls = [String::new()];
        let how = CsvRead {
            columns: &cols,
            opts: &o,
            nulls: &nulls,
            drift: SchemaDrift::AddColumns,
            partition: &[],
        };
        let mut plain = String::from("id,note,amount,extra\n");
        for i in 0..3000 {
            match i % 500 {
                7 => plain.push_str(&format!("{i},short\n")),
                9 => plain.push_str(&format!("x{i},bad id,1.00,e\n")),
                _ => plain.push_str(&format!("{i},\"a, b {i}\",{}.25,e{i}\n", i % 97)),
            }
        }
        // The same rows with a quoted value that spans many lines (and chunks).
        let mut quoted = plain.clone();
        let long: String = (0..400).map(|i| format!("line {i}\n")).collect();
        quoted.push_str(&format!("9999,\"{long}\",1.00,e\n"));
        for (name, text) in [("plain.csv", &plain), ("quoted.csv", &quoted)] {
            let p = dir.path().join(name);
            std::fs::write(&p, text).expect("write");
            let one = decode_csv(&p, &cols, &o, &nulls, SchemaDrift::AddColumns, &[]).expect("one");
            let chunked = decode_in_chunks(&p, how, 3, 0, 1024).expect("chunked");
            assert_eq!(chunked.rows_read, one.rows_read, "{name}");
            assert_eq!(rows_of(&chunked), rows_of(&one), "{name}");
            let bad = |d: &FileData| -> Vec<(i64, String, String)> {
                d.bad
                    .iter()
                    .map(|b| (b.line, b.error.clone(), b.raw.clone()))
                    .collect()
            };
            assert_eq!(bad(&chunked), bad(&one), "{name}");
            assert_eq!(chunked.new_columns, one.new_columns, "{name}");
            assert!(one.bad.iter().any(|b| b.line == 9), "{:?}", bad(&one));
            if name == "plain.csv" {
                assert!(chunked.batches.len() > 1, "it was cut into chunks");
            }
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
