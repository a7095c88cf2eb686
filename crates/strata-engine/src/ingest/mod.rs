//! Sources → `bronze.<source>`: list files, skip those already ingested (the
//! manifest), decode rows, keep rows that do not parse in
//! `bronze.<source>_quarantine`, and commit each as one Delta version whose
//! provenance lists the files and their row accounting.
//!
//! For every file: rows read = rows loaded + rows quarantined (+ rows dropped
//! by an explicit rule, none yet), recorded in the state store.

#[cfg(feature = "ballista")]
pub(crate) mod cluster;
pub mod db;
pub mod files;
mod http;
pub mod infer;
pub mod rows;
pub mod stats;
mod stream;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::logstore::ObjectStoreRef;
use deltalake::protocol::SaveMode;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use strata_project::{ColumnType, Format, OnBadRows, SchemaDrift, Source, SourceMode};
use strata_runtime::{RunInfo, TaskOutput};
use strata_state::IngestedFile;

use crate::engine::Engine;
use crate::error::{Context, Error, Result};
use crate::lake::{Provenance, latest_provenance, version_of};
use files::FileData;

/// Columns Strata adds to every bronze row.
pub const METADATA_COLUMNS: [&str; 3] = ["_ingested_at", "_source", "_batch_id"];

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The schema of `bronze.<source>_quarantine`.
pub fn quarantine_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("_raw", DataType::Utf8, true),
        Field::new("_error", DataType::Utf8, true),
        Field::new("_source", DataType::Utf8, true),
        Field::new("_line", DataType::Int64, true),
        Field::new("_ingested_at", ts_type(), true),
        Field::new("_batch_id", DataType::Utf8, true),
    ]))
}

/// Row accounting of one file, kept in the bronze commit's provenance so the
/// manifest can be rebuilt from the table's own log after a crash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileAccount {
    /// The file, relative to the project when inside it.
    pub file: String,
    /// Size in bytes.
    pub size_bytes: i64,
    /// Modification time, RFC 3339.
    pub modified: String,
    /// Rows read.
    pub rows_read: i64,
    /// Rows loaded into bronze.
    pub rows_loaded: i64,
    /// Rows quarantined.
    pub rows_quarantined: i64,
    /// Rows dropped by an explicit rule (a source expectation with `on_fail = "drop"`).
    #[serde(default)]
    pub rows_dropped: i64,
}

/// Ingests one source for a run.
pub async fn ingest(engine: &Engine, source: &Source, run: &RunInfo) -> Result<TaskOutput> {
    if source.format.is_database() || source.format == Format::Http {
        return ingest_rows(engine, source, run).await;
    }
    let table_name = source.table();
    let root = engine.project.root.clone();
    let (store, all) = list_files(engine, source, &root).await?;
    if all.is_empty() {
        return Err(Error::User(format!(
            "source `{}` matched no files at `{}`; check `path` in strata.toml",
            source.name, source.path_as_written
        )));
    }
    let bronze = engine.lake.open(&table_name).await?;
    let exists = bronze.version().is_some();

    // The manifest, repaired from the table's own log if a crash cut the last
    // ingest between its commit and its manifest record.
    let mut seen = engine
        .state
        .ingested_files(&source.name)
        .await
        .context(|| "reading the manifest".into())?;
    if exists
        && source.mode == SourceMode::NewFiles
        && let Some(p) = latest_provenance(&bronze).await?
        && p.files.iter().any(|f| !seen.contains(f))
        && let Some(accounts) = p.accounts
    {
        let version = version_of(&bronze);
        let recovered: Vec<IngestedFile> = accounts
            .into_iter()
            .map(|a| to_manifest(&source.name, &p.batch_id, &p.run_id, version, a))
            .collect();
        engine
            .state
            .record_files(&recovered)
            .await
            .context(|| "repairing the manifest".into())?;
        seen.extend(p.files.iter().cloned());
    }

    // A retry of this very batch (same run) after its bronze commit landed:
    // record what the commit says instead of appending the snapshot again.
    let batch_id = format!("{}:{}", run.run_id, source.name);
    if exists
        && let Some(p) = latest_provenance(&bronze).await?
        && p.batch_id == batch_id
    {
        let version = version_of(&bronze);
        let accounts = p.accounts.unwrap_or_default();
        let manifest: Vec<IngestedFile> = accounts
            .iter()
            .cloned()
            .map(|a| to_manifest(&source.name, &batch_id, &run.run_id, version, a))
            .collect();
        engine
            .state
            .record_files(&manifest)
            .await
            .context(|| "recording the manifest".into())?;
        return Ok(TaskOutput {
            rows_read: accounts.iter().map(|a| a.rows_read).sum(),
            rows_written: accounts.iter().map(|a| a.rows_loaded).sum(),
            rows_quarantined: accounts.iter().map(|a| a.rows_quarantined).sum(),
            rows_dropped: accounts.iter().map(|a| a.rows_dropped).sum(),
            bytes_read: accounts.iter().map(|a| a.size_bytes).sum(),
            delta_version: version,
            message: Some("already committed by this run".into()),
            ..Default::default()
        });
    }

    let todo: Vec<(Found, String)> = all
        .into_iter()
        .filter(|(_, rel)| source.mode == SourceMode::Snapshot || !seen.contains(rel))
        .collect();
    if todo.is_empty() {
        return Ok(TaskOutput {
            skipped: true,
            delta_version: version_of(&bronze),
            message: Some("no new files".into()),
            ..Default::default()
        });
    }
    // On a cluster the executors read the files and write bronze's.
    #[cfg(feature = "ballista")]
    if engine.on_cluster()
        && let Some(out) =
            cluster::ingest(engine, source, run, &bronze, store.as_ref(), &todo).await?
    {
        return Ok(out);
    }
    // Objects on object storage are read from a local spool, kept until the
    // batch is committed.
    let (_spool, todo) = localize(store.as_ref(), todo).await?;

    let Shape {
        mut columns,
        parquet_target,
    } = shape_of(
        source,
        &bronze,
        (&todo[0].0, &todo[0].1),
        todo.iter().map(|(_, r)| r.as_str()),
    )?;

    if let Some(out) = ingest_streaming(engine, source, run, &bronze, &todo, &columns).await? {
        return Ok(out);
    }
    let mut decoded = decode_all(source, &todo, &columns, &parquet_target).await;
    // Schema drift: columns a file has that the source did not.
    let mut events: Vec<strata_state::SchemaEvent> = vec![];
    let event = |change: &str, column: &str, ty: String, file: &str| {
        schema_event(source, run, change, column, ty, file)
    };
    if source.schema_drift == SchemaDrift::AddColumns {
        let mut added: Vec<(String, ColumnType, String)> = vec![];
        for (_, rel, r) in &decoded {
            for (n, t) in r
                .as_ref()
                .map(|d| d.new_columns.clone())
                .unwrap_or_default()
            {
                if !columns.iter().any(|(c, _)| *c == n) && !added.iter().any(|(c, _, _)| *c == n) {
                    added.push((n, t, rel.clone()));
                }
            }
        }
        if !added.is_empty() {
            for (n, t, rel) in &added {
                columns.push((n.clone(), *t));
                events.push(event("column_added", n, t.to_string(), rel));
            }
            decoded = decode_all(source, &todo, &columns, &parquet_target).await;
        }
    }
    for (_, rel, r) in &decoded {
        for m in r
            .as_ref()
            .map(|d| d.missing_columns.clone())
            .unwrap_or_default()
        {
            events.push(event("column_missing", &m, String::new(), rel));
        }
    }
    // Parquet files carry their types: a column whose type differs from the
    // table's was retyped upstream (its values are cast, or fail to).
    if source.format == Format::Parquet && source.columns.is_none() && exists {
        for (path, rel) in &todo {
            let Ok(file) = files::parquet_schema(path) else {
                continue;
            };
            for f in file.fields() {
                if let Ok(t) = parquet_target.field_with_name(f.name())
                    && type_family(t.data_type()) != type_family(f.data_type())
                {
                    events.push(event(
                        "column_retyped",
                        f.name(),
                        format!("{} -> {}", t.data_type(), f.data_type()),
                        rel,
                    ));
                }
            }
        }
    }
    let target = write_schema(&columns, source.schema_drift);

    let ingested_at = run.started_at.timestamp_micros();
    let mut data_batches = vec![];
    let mut quarantine_batches = vec![];
    let mut accounts = vec![];
    for (path, rel, result) in decoded {
        let data = result.map_err(|e| Error::User(format!("cannot ingest {rel}: {e}")))?;
        refuse_bad_rows(source, &rel, &data)?;
        let loaded: i64 = data.batches.iter().map(|b| b.num_rows() as i64).sum();
        accounts.push(file_account(&path, &rel, &data, loaded)?);
        for b in data.batches {
            data_batches.push(with_metadata(&b, ingested_at, &rel, &batch_id)?);
        }
        if !data.bad.is_empty() {
            quarantine_batches.push(quarantine_batch(&data.bad, ingested_at, &rel, &batch_id)?);
        }
    }

    let data_schema_with_meta =
        with_metadata_schema(&target_for_write(source, &parquet_target, &target));
    commit_batch(
        engine,
        source,
        run,
        bronze,
        Batch {
            batch_id,
            data: data_batches,
            written: None,
            quarantine: quarantine_batches,
            accounts,
            schema: data_schema_with_meta,
            watermark: None,
            events,
            intervals: None,
        },
    )
    .await
}

/// A schema change `file` brought to `source` (`column_added`,
/// `column_missing`, `column_retyped`), to record once its batch commits.
fn schema_event(
    source: &Source,
    run: &RunInfo,
    change: &str,
    column: &str,
    column_type: String,
    file: &str,
) -> strata_state::SchemaEvent {
    strata_state::SchemaEvent {
        source: source.name.clone(),
        change: change.into(),
        column: column.into(),
        column_type,
        file: file.into(),
        run_id: run.run_id.clone(),
        at: strata_state::now(),
    }
}

/// One batch of a source, read and converted, ready to audit and commit.
struct Batch {
    batch_id: String,
    data: Vec<RecordBatch>,
    /// Parquet files already written into the table (instead of `data`):
    /// committed as they are.
    written: Option<(stream::Written, Vec<deltalake::kernel::Add>)>,
    quarantine: Vec<RecordBatch>,
    accounts: Vec<FileAccount>,
    /// The bronze schema, metadata columns included.
    schema: SchemaRef,
    /// A cursor source's watermark after this batch.
    watermark: Option<db::Watermark>,
    /// Schema changes this batch brings (recorded once it is committed).
    events: Vec<strata_state::SchemaEvent>,
    /// Rows per interval of the source's `time_column` and the newest
    /// time, when counted where the rows were read (else counted from `data`).
    intervals: Option<(std::collections::BTreeMap<i64, i64>, Option<i64>)>,
}

/// Audits a batch with the source's checks, commits the quarantine rows, then
/// the bronze rows with the batch's provenance (files, accounts, watermark),
/// then records the manifest and the watermark in the state store.
async fn commit_batch(
    engine: &Engine,
    source: &Source,
    run: &RunInfo,
    bronze: deltalake::DeltaTable,
    batch: Batch,
) -> Result<TaskOutput> {
    let table_name = source.table();
    let Batch {
        batch_id,
        data: mut data_batches,
        written,
        quarantine: mut quarantine_batches,
        mut accounts,
        schema: data_schema_with_meta,
        watermark,
        events,
        intervals,
    } = batch;
    // Source checks audit the batch before anything is committed.
    if !source.checks.is_empty() && !data_batches.is_empty() {
        let audited = audit_batch(
            engine,
            source,
            std::mem::take(&mut data_batches),
            run,
            version_of(&bronze),
        )
        .await?;
        data_batches = audited.kept;
        quarantine_batches.extend(audited.quarantine);
        settle_accounts(
            &mut accounts,
            &audited.kept_by_file,
            &audited.quarantined_by_file,
        );
    }

    let rows_read: i64 = accounts.iter().map(|a| a.rows_read).sum();
    let rows_loaded: i64 = accounts.iter().map(|a| a.rows_loaded).sum();
    let rows_quarantined: i64 = accounts.iter().map(|a| a.rows_quarantined).sum();
    let provenance = Provenance {
        run_id: run.run_id.clone(),
        task: table_name.clone(),
        batch_id: batch_id.clone(),
        files: accounts.iter().map(|a| a.file.clone()).collect(),
        accounts: Some(accounts.clone()),
        watermark: watermark.clone(),
        ..Default::default()
    };

    // Quarantine first. For new files it replaces any quarantine rows of the
    // same files, so a run that died between this commit and the bronze commit
    // leaves no duplicates when the files are read again.
    if !quarantine_batches.is_empty() {
        let q = engine.lake.open(&source.quarantine_table()).await?;
        let files_sql = provenance
            .files
            .iter()
            .map(|f| format!("'{}'", f.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", ");
        // Normally nothing is there and this stays a blind append (incremental
        // readers of the quarantine table rely on that).
        let replace = source.mode == SourceMode::NewFiles
            && q.version().is_some()
            && leftover_rows(engine, &q, &files_sql).await? > 0;
        let mut w = q
            .write(quarantine_batches)
            .with_writer_properties(stats::bronze_writer_properties(&quarantine_schema()))
            .with_commit_properties(provenance.commit_properties());
        w = if replace {
            w.with_save_mode(SaveMode::Overwrite)
                .with_replace_where(format!("_source IN ({files_sql})"))
        } else {
            w.with_save_mode(SaveMode::Append)
        };
        w.await
            .context(|| format!("writing {}", source.quarantine_table()))?;
    }
    let per_interval = match &source.time {
        Some(_) if intervals.is_some() => intervals,
        Some((col, grain)) if !data_batches.is_empty() => {
            Some(interval_counts(engine, source, &data_batches, col, *grain).await?)
        }
        _ => None,
    };
    let props = stats::bronze_writer_properties(&data_schema_with_meta);
    let data_rows: usize = data_batches.iter().map(RecordBatch::num_rows).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let commit = provenance.commit_properties();
    let version = if let Some((files, adds)) = written {
        let paths = adds.clone();
        match crate::staged::commit_files(
            &bronze,
            adds,
            &data_schema_with_meta,
            commit,
            SaveMode::Append,
        )
        .await
        {
            Ok(v) => Some(v),
            Err(e) => {
                files.remove(&paths).await;
                return Err(e).context(|| format!("writing {table_name}"));
            }
        }
    } else if data_rows >= parallel_write_rows() && cores > 1 {
        match append_parallel(
            bronze,
            data_batches,
            &data_schema_with_meta,
            &props,
            commit.clone(),
            cores,
        )
        .await
        .context(|| format!("writing {table_name}"))?
        {
            Appended::Done(version) => Some(version),
            Appended::NotHere(table, batches) => {
                write_bronze(table, batches, data_schema_with_meta, props, commit, source).await?
            }
        }
    } else {
        write_bronze(
            bronze,
            data_batches,
            data_schema_with_meta,
            props,
            commit,
            source,
        )
        .await?
    };
    let mut data_time = None;
    if let (Some((counts, newest)), Some((_, grain))) = (per_interval, &source.time) {
        data_time = newest.and_then(crate::replace_range::micros_rfc3339);
        record_source_intervals(engine, &table_name, *grain, counts, &run.run_id).await?;
    }
    if !events.is_empty() {
        engine
            .state
            .record_schema_events(&events)
            .await
            .context(|| "recording schema changes".into())?;
    }
    if let Some(w) = &watermark {
        engine
            .state
            .set_watermark(
                &source.name,
                &serde_json::to_string(w).unwrap_or_default(),
                &run.run_id,
            )
            .await
            .context(|| "recording the watermark".into())?;
    }

    let manifest: Vec<IngestedFile> = accounts
        .into_iter()
        .map(|a| to_manifest(&source.name, &batch_id, &run.run_id, version, a))
        .collect();
    let files = manifest.len();
    engine
        .state
        .record_files(&manifest)
        .await
        .context(|| "recording the manifest".into())?;
    Ok(TaskOutput {
        skipped: false,
        rows_read,
        rows_written: rows_loaded,
        rows_quarantined,
        rows_dropped: manifest.iter().map(|f| f.rows_dropped).sum(),
        bytes_read: manifest.iter().map(|f| f.size_bytes).sum(),
        data_time,
        delta_version: version,
        message: Some(match (&watermark, source.format.is_database()) {
            (Some(w), _) => format!(
                "read up to {} = {}",
                source
                    .database
                    .as_ref()
                    .and_then(|d| d.cursor.clone())
                    .unwrap_or_default(),
                w.value
            ),
            (None, true) => "snapshot".to_string(),
            (None, false) => format!("{files} file{}", if files == 1 { "" } else { "s" }),
        }),
        ..Default::default()
    })
}

/// Appends a batch to bronze with delta-rs's write (one Parquet writer); new
/// columns join the table unless the source's drift policy is `fail`.
async fn write_bronze(
    bronze: deltalake::DeltaTable,
    batches: Vec<RecordBatch>,
    schema: SchemaRef,
    props: deltalake::parquet::file::properties::WriterProperties,
    commit: deltalake::kernel::transaction::CommitProperties,
    source: &Source,
) -> Result<Option<i64>> {
    let mut w = if batches.is_empty() {
        // Every row was bad: still commit an empty version so the batch is recorded.
        bronze.write(vec![RecordBatch::new_empty(schema)])
    } else {
        bronze.write(batches)
    }
    .with_writer_properties(props)
    .with_save_mode(SaveMode::Append)
    .with_commit_properties(commit);
    if source.schema_drift != SchemaDrift::Fail {
        // New columns (or `_rescued`) join the table; older rows read them as null.
        w = w.with_schema_mode(deltalake::operations::write::SchemaMode::Merge);
    }
    let table = w.await.context(|| format!("writing {}", source.table()))?;
    Ok(version_of(&table))
}

/// Under `on_bad_rows = "fail"`, a file with a bad row stops the batch,
/// naming the file and line.
fn refuse_bad_rows(source: &Source, rel: &str, data: &FileData) -> Result<()> {
    match data.bad.first() {
        Some(b) if source.on_bad_rows == OnBadRows::Fail => Err(Error::User(format!(
            "{rel}:{}: {} (on_bad_rows = \"fail\": nothing of this batch was loaded; fix the file or set on_bad_rows = \"quarantine\")",
            b.line, b.error
        ))),
        _ => Ok(()),
    }
}

/// A file's row accounting: its size and time on disk, rows read, `loaded`,
/// and the bad rows quarantined.
fn file_account(path: &Path, rel: &str, data: &FileData, loaded: i64) -> Result<FileAccount> {
    let meta = std::fs::metadata(path).context(|| format!("reading {rel}"))?;
    Ok(FileAccount {
        file: rel.to_string(),
        size_bytes: meta.len() as i64,
        modified: meta
            .modified()
            .map(|m| strata_runtime::rfc3339(chrono::DateTime::<chrono::Utc>::from(m)))
            .unwrap_or_default(),
        rows_read: data.rows_read,
        rows_loaded: loaded,
        rows_quarantined: data.bad.len() as i64,
        rows_dropped: 0,
    })
}

/// Bronze batches of at least this many rows are written by one Parquet
/// writer per core (delta-rs's own write encodes on one thread).
const PARALLEL_WRITE_ROWS: usize = 1_000_000;

/// [`PARALLEL_WRITE_ROWS`], or `STRATA_PARALLEL_WRITE_ROWS` (for tests).
fn parallel_write_rows() -> usize {
    std::env::var("STRATA_PARALLEL_WRITE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(PARALLEL_WRITE_ROWS)
}

/// The outcome of [`append_parallel`].
enum Appended {
    /// Committed as this version.
    Done(i64),
    /// The table's schema is not the batches': write them the usual way.
    NotHere(deltalake::DeltaTable, Vec<RecordBatch>),
}

/// Appends `batches` as one commit, their Parquet files written by `threads`
/// writers at once. A table that does not exist yet is first created empty.
async fn append_parallel(
    table: deltalake::DeltaTable,
    batches: Vec<RecordBatch>,
    schema: &SchemaRef,
    props: &deltalake::parquet::file::properties::WriterProperties,
    commit: deltalake::kernel::transaction::CommitProperties,
    threads: usize,
) -> std::result::Result<Appended, deltalake::DeltaTableError> {
    use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
    use deltalake::writer::{DeltaWriter as _, RecordBatchWriter};
    let mut table = table;
    if table.version().is_none() {
        let kernel: deltalake::kernel::StructType = schema.as_ref().try_into_kernel()?;
        table = table
            .create()
            .with_columns(kernel.fields().cloned())
            .await?;
    }
    let probe = RecordBatchWriter::for_table(&table)?;
    if probe.arrow_schema().fields() != schema.fields() {
        return Ok(Appended::NotHere(table, batches));
    }
    // Contiguous groups keep the rows' order within each file.
    let per = batches.len().div_ceil(threads).max(1);
    let mut groups: Vec<Vec<RecordBatch>> = vec![];
    let mut it = batches.into_iter().peekable();
    while it.peek().is_some() {
        groups.push(it.by_ref().take(per).collect());
    }
    let mut set = tokio::task::JoinSet::new();
    for group in groups {
        let mut w = RecordBatchWriter::for_table(&table)?.with_writer_properties(props.clone());
        set.spawn(async move {
            for b in group {
                w.write(b).await?;
            }
            w.flush().await
        });
    }
    let mut adds = vec![];
    while let Some(r) = set.join_next().await {
        adds.extend(r.map_err(|e| deltalake::DeltaTableError::Generic(e.to_string()))??);
    }
    Ok(Appended::Done(
        crate::staged::commit_files(&table, adds, schema, commit, SaveMode::Append).await?,
    ))
}

/// Streams a batch of one large uncompressed CSV file into bronze
/// ([`stream`]): decoded in chunks on every core, each thread encoding
/// its rows into Parquet files of its own as it goes, committed once.
/// `None` when the batch does not qualify (source checks or a time column,
/// which need the rows in memory; several files; drift; a table whose
/// columns differ): the caller then reads it the usual way. On object
/// storage the files are written into a spool folder and uploaded.
async fn ingest_streaming(
    engine: &Engine,
    source: &Source,
    run: &RunInfo,
    bronze: &deltalake::DeltaTable,
    todo: &[(PathBuf, String)],
    columns: &[(String, ColumnType)],
) -> Result<Option<TaskOutput>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let [(path, rel)] = todo else {
        return Ok(None);
    };
    if source.format != Format::Csv
        || !source.checks.is_empty()
        || source.time.is_some()
        || source.schema_drift == SchemaDrift::Rescue
        || cores < 2
    {
        return Ok(None);
    }
    // On object storage the files are written into a spool folder first.
    let (dir, spool) =
        stream::folder_for(bronze.table_url()).context(|| "creating a spool folder".into())?;
    let schema = with_metadata_schema(&write_schema(columns, source.schema_drift));
    if bronze.version().is_some()
        && (!crate::staged::same_columns(bronze, &schema)
            || bronze
                .snapshot()
                .is_ok_and(|s| !s.metadata().partition_columns().is_empty()))
    {
        return Ok(None);
    }
    let batch_id = format!("{}:{}", run.run_id, source.name);
    let ingested_at = run.started_at.timestamp_micros();
    let writers = stream::LocalWriters::new(
        &dir,
        schema.clone(),
        stats::bronze_writer_properties(&schema),
        cores,
        (ingested_at, rel, &batch_id),
    )
    .context(|| format!("writing {}", source.table()))?;
    let (p, r, src, cols) = (path.clone(), rel.clone(), source.clone(), columns.to_vec());
    let (writers, decoded) = tokio::task::spawn_blocking(move || {
        let partition = files::hive_values(&r);
        let sink = |w: usize, b: Vec<RecordBatch>| writers.put(w, b);
        let r = files::decode_csv_streaming(
            &p,
            files::CsvRead {
                columns: &cols,
                opts: &src.csv,
                nulls: &src.null_values,
                drift: src.schema_drift,
                partition: &partition,
            },
            cores,
            &sink,
        );
        (writers, r)
    })
    .await
    .map_err(|e| Error::Internal(format!("decoder crashed: {e}")))?;
    let data = match decoded {
        Ok(Some(data)) => data,
        Ok(None) => {
            writers.discard();
            return Ok(None);
        }
        Err(e) => {
            writers.discard();
            return Err(Error::User(format!("cannot ingest {rel}: {e}")));
        }
    };
    if let Err(e) = refuse_bad_rows(source, rel, &data) {
        writers.discard();
        return Err(e);
    }
    let adds = writers
        .finish()
        .map_err(|e| Error::Internal(format!("writing {}: {e}", source.table())))?;
    let written = if spool.is_some() {
        let store = bronze.log_store().object_store(None);
        stream::upload(&store, &dir, &adds)
            .await
            .map_err(|e| Error::User(format!("writing {}: {e}", source.table())))?;
        stream::Written::Store(store)
    } else {
        stream::Written::Local(dir)
    };
    let account = file_account(path, rel, &data, data.rows_read - data.bad.len() as i64)?;
    let quarantine = if data.bad.is_empty() {
        vec![]
    } else {
        match quarantine_batch(&data.bad, ingested_at, rel, &batch_id) {
            Ok(q) => vec![q],
            Err(e) => {
                written.remove(&adds).await;
                return Err(e);
            }
        }
    };
    commit_batch(
        engine,
        source,
        run,
        bronze.clone(),
        Batch {
            batch_id,
            data: vec![],
            written: Some((written, adds)),
            quarantine,
            accounts: vec![account],
            schema,
            watermark: None,
            events: vec![],
            intervals: None,
        },
    )
    .await
    .map(Some)
}

/// Decodes files two at a time, off the async threads; when there are fewer
/// files than cores, a large CSV file is itself decoded on several threads.
async fn decode_all(
    source: &Source,
    todo: &[(PathBuf, String)],
    columns: &[(String, ColumnType)],
    parquet_target: &SchemaRef,
) -> Vec<(PathBuf, String, std::result::Result<FileData, String>)> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads = if todo.len() < cores { cores } else { 1 };
    futures::stream::iter(todo.to_vec())
        .map(|(path, rel)| {
            let source = source.clone();
            let columns = columns.to_vec();
            let pt = parquet_target.clone();
            async move {
                let p = path.clone();
                let partition = files::hive_values(&rel);
                let r = tokio::task::spawn_blocking(move || match source.format {
                    Format::Csv => files::decode_csv_parallel(
                        &p,
                        files::CsvRead {
                            columns: &columns,
                            opts: &source.csv,
                            nulls: &source.null_values,
                            drift: source.schema_drift,
                            partition: &partition,
                        },
                        threads,
                    ),
                    Format::Ndjson => {
                        files::decode_ndjson(&p, &columns, source.schema_drift, &partition)
                    }
                    Format::Parquet => files::decode_parquet(&p, &pt, &partition),
                    Format::Postgres | Format::Mysql | Format::Http => {
                        Err("this source has no files".to_string())
                    }
                })
                .await
                .unwrap_or_else(|e| Err(format!("decoder crashed: {e}")));
                (path, rel, r)
            }
        })
        .buffered(2)
        .collect()
        .await
}

/// The data schema bronze is written with: the columns, plus `_rescued` when
/// the source rescues.
pub fn write_schema(columns: &[(String, ColumnType)], drift: SchemaDrift) -> SchemaRef {
    let base = rows::schema_of(columns);
    if drift != SchemaDrift::Rescue {
        return base;
    }
    let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(rows::RESCUED, DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// A type's kind for schema-change events: widths, units, time zones and
/// string encodings do not count as a change; a different kind (or decimal
/// precision and scale) does.
fn type_family(t: &DataType) -> String {
    match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => "integer".into(),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "float".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "binary".into(),
        DataType::Timestamp(_, _) => "timestamp".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("decimal({p},{s})"),
        other => other.to_string(),
    }
}

/// Rows of a batch per data interval of the source's `time_column`.
async fn interval_counts(
    engine: &Engine,
    source: &Source,
    batches: &[RecordBatch],
    col: &str,
    grain: strata_project::Grain,
) -> Result<(std::collections::BTreeMap<i64, i64>, Option<i64>)> {
    let schema = batches[0].schema();
    if schema.field_with_name(col).is_err() {
        return Err(Error::User(format!(
            "strata.toml: source `{}`: time_column `{col}` is not a column of the source",
            source.name
        )));
    }
    let ctx = engine.local_context();
    let table = datafusion::datasource::MemTable::try_new(schema, vec![batches.to_vec()])
        .context(|| "counting rows per interval".into())?;
    ctx.register_table("__strata_range", Arc::new(table))
        .context(|| "counting rows per interval".into())?;
    crate::replace_range::rows_per_interval(&ctx, col, grain).await
}

/// Records the intervals a batch brought data to: `done` when new, `late`
/// when an earlier batch had already loaded data for that interval.
async fn record_source_intervals(
    engine: &Engine,
    table: &str,
    grain: strata_project::Grain,
    counts: std::collections::BTreeMap<i64, i64>,
    run_id: &str,
) -> Result<()> {
    let (Some(first), Some(last)) = (counts.keys().next(), counts.keys().last()) else {
        return Ok(());
    };
    let ts = |micros: i64| chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros);
    let (Some(from), Some(to)) = (ts(*first), ts(*last)) else {
        return Ok(());
    };
    let before: std::collections::BTreeMap<String, Option<i64>> = engine
        .state
        .intervals_in(
            table,
            &strata_runtime::rfc3339(from),
            &strata_runtime::rfc3339(grain.next(to)),
        )
        .await
        .context(|| "reading interval state".into())?
        .into_iter()
        .map(|r| (r.start, r.rows))
        .collect();
    let now = strata_state::now();
    let records: Vec<strata_state::IntervalRecord> = counts
        .iter()
        .filter_map(|(start, n)| {
            let s = ts(*start)?;
            let key = strata_runtime::rfc3339(s);
            let old = before.get(&key).copied().flatten();
            // Rows for an interval an earlier batch already loaded arrived late.
            let status = if before.contains_key(&key) {
                "late"
            } else {
                "done"
            };
            Some(strata_state::IntervalRecord {
                model: table.to_string(),
                start: key,
                end: strata_runtime::rfc3339(grain.next(s)),
                status: status.into(),
                rows: Some(old.unwrap_or(0) + n),
                run_id: run_id.to_string(),
                updated_at: now.clone(),
                error: None,
                attempts: 1,
            })
        })
        .collect();
    engine
        .state
        .record_intervals(&records)
        .await
        .context(|| "recording intervals".into())
}

/// Ingests a database source: the whole table or query (`snapshot`), or the
/// rows past the watermark of the last commit (`cursor`). The watermark is part
/// of the bronze commit itself, so a crash after the commit cannot make the
/// next run read those rows again, and a crash before it re-reads them.
async fn ingest_rows(engine: &Engine, source: &Source, run: &RunInfo) -> Result<TaskOutput> {
    let table_name = source.table();
    let bronze = engine.lake.open(&table_name).await?;
    let exists = bronze.version().is_some();
    let batch_id = format!("{}:{}", run.run_id, source.name);
    let last = if exists {
        latest_provenance(&bronze).await?
    } else {
        None
    };
    if let Some(p) = &last
        && p.batch_id == batch_id
    {
        // A retry of this very batch after its commit landed.
        let accounts = p.accounts.clone().unwrap_or_default();
        return Ok(TaskOutput {
            rows_read: accounts.iter().map(|a| a.rows_read).sum(),
            rows_written: accounts.iter().map(|a| a.rows_loaded).sum(),
            rows_quarantined: accounts.iter().map(|a| a.rows_quarantined).sum(),
            delta_version: version_of(&bronze),
            message: Some("already committed by this run".into()),
            ..Default::default()
        });
    }
    let watermark = match source.mode {
        SourceMode::Cursor => {
            // The newest commit that carries one (a commit of another kind,
            // e.g. a maintenance operation, carries none).
            let mut w = last.as_ref().and_then(|p| p.watermark.clone());
            if w.is_none() && exists {
                w = crate::lake::latest_watermark(&bronze).await?;
            }
            w
        }
        _ => None,
    };
    // The declared columns, else the table's (else the fetch's).
    let base: Option<Vec<(String, ColumnType)>> = match (&source.columns, exists) {
        (Some(c), _) => Some(c.clone()),
        (None, true) => Some(
            data_schema(&bronze)?
                .fields()
                .iter()
                .map(|f| {
                    (
                        f.name().clone(),
                        rows::column_type(f.data_type()).unwrap_or(ColumnType::Utf8),
                    )
                })
                .collect(),
        ),
        (None, false) => None,
    };
    // On a cluster an executor reads the database or API and writes bronze's files.
    #[cfg(feature = "ballista")]
    if engine.on_cluster() {
        return cluster::ingest_rows(engine, source, run, bronze, watermark, base).await;
    }
    let fetched = fetch_rows(source, watermark.as_ref()).await?;
    if source.mode == SourceMode::Cursor && fetched.rows.is_empty() {
        return Ok(no_rows_past(&bronze, watermark.as_ref()));
    }
    let Some(c) = convert_rows(source, &fetched, base, run.started_at, &batch_id)? else {
        return Ok(no_columns_yet());
    };
    let ingested_at = run.started_at.timestamp_micros();
    let quarantine = c
        .bad
        .iter()
        .map(|(part, bad)| quarantine_batch(bad, ingested_at, part, &batch_id))
        .collect::<Result<Vec<_>>>()?;
    let events = c.events(source, run);
    commit_batch(
        engine,
        source,
        run,
        bronze,
        Batch {
            batch_id,
            data: c.data,
            written: None,
            quarantine,
            accounts: c.accounts,
            schema: with_metadata_schema(&write_schema(&c.columns, source.schema_drift)),
            watermark: fetched.watermark.or(watermark),
            events,
            intervals: None,
        },
    )
    .await
}

/// Reads a database or API source's rows (past `watermark` in cursor mode).
async fn fetch_rows(source: &Source, watermark: Option<&db::Watermark>) -> Result<db::Fetched> {
    match (&source.database, &source.http) {
        (Some(db), _) => db::fetch(source, db, watermark).await,
        (None, Some(h)) => http::fetch(source, h).await,
        (None, None) => Err(Error::Internal(format!(
            "source `{}` is neither a database nor an API",
            source.name
        ))),
    }
}

/// A cursor source's run that found no new rows.
fn no_rows_past(bronze: &deltalake::DeltaTable, watermark: Option<&db::Watermark>) -> TaskOutput {
    TaskOutput {
        skipped: true,
        delta_version: version_of(bronze),
        message: Some(match watermark {
            Some(w) => format!("no rows past {}", w.value),
            None => "the table is empty".into(),
        }),
        ..Default::default()
    }
}

/// A source run with nothing to learn its columns from.
fn no_columns_yet() -> TaskOutput {
    TaskOutput {
        skipped: true,
        message: Some("the query returned no rows and no columns are declared yet".into()),
        ..Default::default()
    }
}

/// What a database or API fetch's rows became.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Converted {
    /// The columns written: the base ones, plus new ones under `add_columns`.
    columns: Vec<(String, ColumnType)>,
    /// The columns that joined (`add_columns`).
    added: Vec<(String, ColumnType)>,
    /// Where the first rows came from (for schema events).
    origin: String,
    /// Typed rows with the metadata columns.
    #[serde(skip)]
    data: Vec<RecordBatch>,
    /// Each part's bad rows (parts without any left out).
    bad: Vec<(String, Vec<rows::BadRow>)>,
    /// Each part's accounting.
    accounts: Vec<FileAccount>,
}

impl Converted {
    /// The schema events of the columns that joined.
    fn events(&self, source: &Source, run: &RunInfo) -> Vec<strata_state::SchemaEvent> {
        self.added
            .iter()
            .map(|(n, t)| schema_event(source, run, "column_added", n, t.to_string(), &self.origin))
            .collect()
    }
}

/// Types `fetched`'s rows into `base`'s columns (the fetch's own when
/// `None`), part by part, as files are: rows that do not fit are bad rows
/// of their part. `None` when there are no columns to write yet.
fn convert_rows(
    source: &Source,
    fetched: &db::Fetched,
    base: Option<Vec<(String, ColumnType)>>,
    started_at: chrono::DateTime<chrono::Utc>,
    batch_id: &str,
) -> Result<Option<Converted>> {
    let mut columns = base.unwrap_or_else(|| fetched.columns.clone());
    if columns.is_empty() {
        return Ok(None);
    }
    // Schema drift: columns the database returns that the source did not have.
    let origin = fetched
        .parts
        .first()
        .map(|(p, _)| p.clone())
        .unwrap_or_default();
    let new: Vec<(String, ColumnType)> = fetched
        .columns
        .iter()
        .filter(|(n, _)| !columns.iter().any(|(c, _)| c == n))
        .cloned()
        .collect();
    let mut added = vec![];
    if !new.is_empty() {
        match source.schema_drift {
            SchemaDrift::Fail => {
                return Err(Error::User(format!(
                    "source `{}`: the database returned new columns {} (schema_drift = \"fail\": nothing was loaded)",
                    source.name,
                    new.iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            SchemaDrift::AddColumns => {
                for (n, t) in &new {
                    columns.push((n.clone(), *t));
                    added.push((n.clone(), *t));
                }
            }
            SchemaDrift::Rescue => {}
        }
    }
    // Each declared column is read from the fetched column of the same name.
    let index: Vec<Option<usize>> = columns
        .iter()
        .map(|(n, _)| fetched.columns.iter().position(|(f, _)| f == n))
        .collect();
    let missing: Vec<&str> = columns
        .iter()
        .zip(&index)
        .filter(|(_, i)| i.is_none())
        .map(|((n, _), _)| n.as_str())
        .collect();
    if !missing.is_empty() && !fetched.rows.is_empty() && source.database.is_some() {
        return Err(Error::User(format!(
            "source `{}`: the database returned no column {} (it returned {})",
            source.name,
            missing.join(", "),
            fetched
                .columns
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let rescue = source.schema_drift == SchemaDrift::Rescue;
    let mut sink = if rescue {
        rows::RowSink::rescuing(&columns)
    } else {
        rows::RowSink::new(&columns)
    };
    let unexpected: Vec<usize> = fetched
        .columns
        .iter()
        .enumerate()
        .filter(|(_, (n, _))| !columns.iter().any(|(c, _)| c == n))
        .map(|(i, _)| i)
        .collect();
    let ingested_at = started_at.timestamp_micros();
    let mut data = vec![];
    let mut bad_parts = vec![];
    let mut accounts = vec![];
    let mut rows_iter = fetched.rows.iter();
    // Each part (the query's result, or one page of an API) is accounted for
    // like a file: its rows read, loaded and quarantined, its name in `_source`.
    for (part, count) in &fetched.parts {
        let (read0, bad0) = (sink.rows_read, sink.bad.len());
        for (n, row) in rows_iter.by_ref().take(*count).enumerate() {
            let mut extra = serde_json::Map::new();
            if rescue {
                for &j in &unexpected {
                    if let Some(v) = row.get(j).filter(|v| !v.is_null()) {
                        extra.insert(fetched.columns[j].0.clone(), v.clone());
                    }
                }
            }
            sink.push_row_rescuing(
                n as i64 + 1,
                || db::raw_record(&fetched.columns, row),
                |i, t| match index[i].and_then(|j| row.get(j)) {
                    Some(v) => rows::parse_json(v, t),
                    None => Ok(rows::Cell::Null),
                },
                |i| index[i].and_then(|j| row.get(j)).cloned(),
                extra,
            )
            .map_err(Error::Internal)?;
        }
        sink.flush().map_err(Error::Internal)?;
        let bad = &sink.bad[bad0..];
        if source.on_bad_rows == OnBadRows::Fail
            && let Some(b) = bad.first()
        {
            return Err(Error::User(format!(
                "source `{}`, {part}, row {}: {} (on_bad_rows = \"fail\": nothing of this batch was loaded)",
                source.name, b.line, b.error
            )));
        }
        let mut loaded = 0;
        for b in std::mem::take(&mut sink.batches) {
            loaded += b.num_rows() as i64;
            data.push(with_metadata(&b, ingested_at, part, batch_id)?);
        }
        if !bad.is_empty() {
            bad_parts.push((part.clone(), bad.to_vec()));
        }
        accounts.push(FileAccount {
            file: part.clone(),
            size_bytes: 0,
            modified: strata_runtime::rfc3339(started_at),
            rows_read: sink.rows_read - read0,
            rows_loaded: loaded,
            rows_quarantined: bad.len() as i64,
            rows_dropped: 0,
        });
    }
    Ok(Some(Converted {
        columns,
        added,
        origin,
        data,
        bad: bad_parts,
        accounts,
    }))
}

/// Quarantine rows already stored for these files (left by a run that died
/// before its bronze commit).
async fn leftover_rows(engine: &Engine, q: &deltalake::DeltaTable, files_sql: &str) -> Result<i64> {
    let ctx = engine.local_context();
    let provider: Arc<dyn datafusion::catalog::TableProvider> = q
        .table_provider()
        .await
        .context(|| "reading the quarantine table".into())?;
    ctx.register_table("q", provider)
        .context(|| "reading the quarantine table".into())?;
    crate::engine::scalar_i64(
        &ctx,
        &format!("select count(*) from q where _source in ({files_sql})"),
    )
    .await
}

fn target_for_write(source: &Source, parquet_target: &SchemaRef, target: &SchemaRef) -> SchemaRef {
    if source.format == Format::Parquet {
        parquet_target.clone()
    } else {
        target.clone()
    }
}

fn to_manifest(
    source: &str,
    batch_id: &str,
    run_id: &str,
    version: Option<i64>,
    a: FileAccount,
) -> IngestedFile {
    IngestedFile {
        source: source.to_string(),
        batch_id: batch_id.to_string(),
        file: a.file,
        size_bytes: a.size_bytes,
        modified: a.modified,
        rows_read: a.rows_read,
        rows_loaded: a.rows_loaded,
        rows_quarantined: a.rows_quarantined,
        rows_dropped: a.rows_dropped,
        delta_version: version,
        run_id: run_id.to_string(),
        ingested_at: strata_state::now(),
    }
}

/// Files of `source` that have landed and are not in its manifest yet, as
/// named in the manifest (relative to the project): what a sensor waits for.
pub async fn pending_files(engine: &Engine, source: &Source) -> Result<Vec<String>> {
    let (_, all) = list_files(engine, source, &engine.project.root).await?;
    let seen = engine
        .state
        .ingested_files(&source.name)
        .await
        .context(|| "reading the manifest".into())?;
    Ok(all
        .into_iter()
        .map(|(_, rel)| rel)
        .filter(|r| !seen.contains(r))
        .collect())
}

/// A file a source's glob matched.
#[derive(Debug, Clone)]
enum Found {
    /// On local disk.
    Local(PathBuf),
    /// On object storage (read through a local spool).
    Remote(crate::storage::Listed),
}

/// Matching files, sorted, each with its name relative to the project root
/// (its full URL on object storage), and the store remote ones are read from.
async fn list_files(
    engine: &Engine,
    source: &Source,
    root: &Path,
) -> Result<(Option<ObjectStoreRef>, Vec<(Found, String)>)> {
    if crate::storage::is_remote(&source.path) {
        let (store, listed) = crate::storage::list(&source.path, engine.lake.options())
            .await
            .map_err(|e| match e {
                Error::User(m) => Error::User(format!("source `{}`: {m}", source.name)),
                Error::External(m) => Error::External(format!("source `{}`: {m}", source.name)),
                other => other,
            })?;
        let files = listed
            .into_iter()
            .filter(|l| !l.url.ends_with('/'))
            .map(|l| (l.url.clone(), l))
            .map(|(url, l)| (Found::Remote(l), url))
            .collect();
        return Ok((Some(store), files));
    }
    let paths = glob::glob(&source.path).map_err(|e| {
        Error::User(format!(
            "source `{}`: bad path pattern `{}`: {e}",
            source.name, source.path_as_written
        ))
    })?;
    let mut out = vec![];
    for p in paths {
        let p = p.map_err(|e| {
            Error::External(format!("listing files of source `{}`: {e}", source.name))
        })?;
        if p.is_file() {
            let rel = p
                .strip_prefix(root)
                .map(|r| r.display().to_string())
                .unwrap_or_else(|_| p.display().to_string());
            out.push((Found::Local(p), rel));
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok((None, out))
}

/// Local paths for `todo`: remote objects are downloaded into a spool folder
/// (returned, so it lives as long as the batch needs it).
async fn localize(
    store: Option<&ObjectStoreRef>,
    todo: Vec<(Found, String)>,
) -> Result<(Option<tempfile::TempDir>, Vec<(PathBuf, String)>)> {
    let remote: Vec<crate::storage::Listed> = todo
        .iter()
        .filter_map(|(f, _)| match f {
            Found::Remote(l) => Some(l.clone()),
            Found::Local(_) => None,
        })
        .collect();
    let (spool, mut fetched) = match (store, remote.is_empty()) {
        (Some(store), false) => {
            let dir = tempfile::Builder::new()
                .prefix("strata-spool-")
                .tempdir()
                .map_err(|e| Error::External(format!("creating a spool folder: {e}")))?;
            let paths = crate::storage::fetch(store, &remote, dir.path()).await?;
            (Some(dir), paths.into_iter())
        }
        _ => (None, Vec::new().into_iter()),
    };
    let mut out = Vec::with_capacity(todo.len());
    for (f, rel) in todo {
        let path = match f {
            Found::Local(p) => p,
            Found::Remote(_) => fetched
                .next()
                .ok_or_else(|| Error::Internal(format!("{rel} was not fetched")))?,
        };
        out.push((path, rel));
    }
    Ok((spool, out))
}

/// How a batch of a file source is read.
struct Shape {
    /// The source's columns: declared, the table's, or inferred from the
    /// first file, plus the columns of hive-style folders.
    columns: Vec<(String, ColumnType)>,
    /// The schema a Parquet source's rows are read as (the columns' otherwise).
    parquet_target: SchemaRef,
}

/// The [`Shape`] of a batch whose files are named `rels`; `first` is the
/// first file on local disk and its name (read only for a new table without
/// declared columns). Declared columns that differ from the table's are
/// refused.
fn shape_of<'a>(
    source: &Source,
    bronze: &deltalake::DeltaTable,
    (first, first_rel): (&Path, &str),
    rels: impl Iterator<Item = &'a str>,
) -> Result<Shape> {
    let exists = bronze.version().is_some();
    let mut columns = columns_for(source, bronze, first)?;
    // Hive-style folders (`date=2024-01-01/`) give columns of their own.
    let mut hive: Vec<(String, Vec<String>)> = vec![];
    for rel in rels {
        for (k, v) in files::hive_values(rel) {
            match hive.iter_mut().find(|(hk, _)| *hk == k) {
                Some((_, vals)) => vals.push(v),
                None => hive.push((k, vec![v])),
            }
        }
    }
    for (k, vals) in &hive {
        if !columns.iter().any(|(c, _)| c == k) {
            columns.push((
                k.clone(),
                infer::infer_text(vals.iter().map(String::as_str)),
            ));
        }
    }
    let target = rows::schema_of(&columns);
    if exists && source.columns.is_some() {
        let have = data_schema(bronze)?;
        let shown = |s: &Schema| {
            s.fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let same = have.fields().len() == target.fields().len()
            && have.fields().iter().zip(target.fields()).all(|(a, b)| {
                a.name() == b.name()
                    && rows::column_type(a.data_type()) == rows::column_type(b.data_type())
            });
        if !same {
            return Err(Error::User(format!(
                "the declared columns of source `{}` ({}) differ from {} ({}); changing the columns of an ingested source is not supported yet: restore the declaration",
                source.name,
                shown(&target),
                source.table(),
                shown(&have)
            )));
        }
    }
    let parquet_target = match source.format {
        Format::Parquet if source.columns.is_none() && !exists => {
            let file = files::parquet_schema(first)
                .map_err(|e| Error::User(format!("{first_rel}: {e}")))?;
            let mut fields: Vec<Field> = file.fields().iter().map(|f| f.as_ref().clone()).collect();
            for (k, t) in &columns {
                if hive.iter().any(|(hk, _)| hk == k) && file.field_with_name(k).is_err() {
                    fields.push(Field::new(k, rows::arrow_type(*t), true));
                }
            }
            Arc::new(Schema::new(fields))
        }
        Format::Parquet if source.columns.is_none() => data_schema(bronze)?,
        _ => target.clone(),
    };

    Ok(Shape {
        columns,
        parquet_target,
    })
}

/// Declared columns, else the bronze table's, else inferred from `first`.
fn columns_for(
    source: &Source,
    bronze: &deltalake::DeltaTable,
    first: &Path,
) -> Result<Vec<(String, ColumnType)>> {
    if let Some(c) = &source.columns {
        // Columns added to bronze by schema drift come after the declared ones.
        if bronze.version().is_some() {
            let have: Vec<(String, Option<ColumnType>)> = data_schema(bronze)?
                .fields()
                .iter()
                .map(|f| (f.name().clone(), rows::column_type(f.data_type())))
                .collect();
            let prefix = have.len() > c.len()
                && c.iter()
                    .zip(&have)
                    .all(|((n, t), (hn, ht))| n == hn && Some(*t) == *ht);
            if prefix {
                return Ok(have
                    .into_iter()
                    .map(|(n, t)| (n, t.unwrap_or(ColumnType::Utf8)))
                    .collect());
            }
        }
        return Ok(c.clone());
    }
    if bronze.version().is_some() {
        let schema = data_schema(bronze)?;
        return Ok(schema
            .fields()
            .iter()
            .map(|f| {
                (
                    f.name().clone(),
                    rows::column_type(f.data_type()).unwrap_or(ColumnType::Utf8),
                )
            })
            .collect());
    }
    let shown = first.display();
    match source.format {
        Format::Csv => files::infer_csv(first, &source.csv, &source.null_values),
        Format::Ndjson => files::infer_ndjson(first),
        Format::Parquet | Format::Postgres | Format::Mysql | Format::Http => Ok(vec![]),
    }
    .map_err(|e| Error::User(format!("cannot infer the columns of source `{}` from {shown}: {e}; declare them with `columns = {{ … }}`", source.name)))
}

/// The bronze table's schema without Strata's metadata columns.
fn data_schema(bronze: &deltalake::DeltaTable) -> Result<SchemaRef> {
    let snapshot = bronze
        .snapshot()
        .context(|| "reading bronze schema".into())?;
    let arrow: Schema = snapshot.snapshot().arrow_schema().as_ref().clone();
    Ok(Arc::new(Schema::new(
        arrow
            .fields()
            .iter()
            .filter(|f| !METADATA_COLUMNS.contains(&f.name().as_str()) && f.name() != rows::RESCUED)
            .cloned()
            .collect::<Vec<_>>(),
    )))
}

/// A source's data columns plus the metadata columns Strata adds in bronze.
pub fn with_metadata_schema(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(METADATA_COLUMNS[0], ts_type(), true)));
    fields.push(Arc::new(Field::new(
        METADATA_COLUMNS[1],
        DataType::Utf8,
        true,
    )));
    fields.push(Arc::new(Field::new(
        METADATA_COLUMNS[2],
        DataType::Utf8,
        true,
    )));
    Arc::new(Schema::new(fields))
}

fn with_metadata(
    batch: &RecordBatch,
    ingested_at: i64,
    source: &str,
    batch_id: &str,
) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
    cols.push(Arc::new(
        TimestampMicrosecondArray::from(vec![ingested_at; n]).with_timezone("UTC"),
    ));
    cols.push(Arc::new(StringArray::from(vec![source; n])));
    cols.push(Arc::new(StringArray::from(vec![batch_id; n])));
    RecordBatch::try_new(with_metadata_schema(&batch.schema()), cols)
        .context(|| "adding metadata columns".into())
}

fn quarantine_batch(
    bad: &[rows::BadRow],
    ingested_at: i64,
    source: &str,
    batch_id: &str,
) -> Result<RecordBatch> {
    let n = bad.len();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(
            bad.iter().map(|b| b.raw.as_str()).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            bad.iter().map(|b| b.error.as_str()).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(vec![source; n])),
        Arc::new(Int64Array::from(
            bad.iter().map(|b| b.line).collect::<Vec<_>>(),
        )),
        Arc::new(TimestampMicrosecondArray::from(vec![ingested_at; n]).with_timezone("UTC")),
        Arc::new(StringArray::from(vec![batch_id; n])),
    ];
    RecordBatch::try_new(quarantine_schema(), cols).context(|| "building quarantine rows".into())
}

/// Moves each file's loaded rows to where the source's checks sent them:
/// kept (`kept_by_file`), quarantined, or else dropped.
fn settle_accounts(
    accounts: &mut [FileAccount],
    kept_by_file: &std::collections::BTreeMap<String, i64>,
    quarantined_by_file: &std::collections::BTreeMap<String, i64>,
) {
    for a in accounts.iter_mut() {
        let kept = kept_by_file.get(&a.file).copied().unwrap_or(0);
        let quarantined = quarantined_by_file.get(&a.file).copied().unwrap_or(0);
        a.rows_dropped += a.rows_loaded - kept - quarantined;
        a.rows_loaded = kept;
        a.rows_quarantined += quarantined;
    }
}

/// Rows per file (`_source`) in `batches`.
fn rows_by_file(batches: &[RecordBatch]) -> Result<std::collections::BTreeMap<String, i64>> {
    use datafusion::arrow::array::{Array, AsArray};
    let what = || "counting rows per file".to_string();
    let mut m = std::collections::BTreeMap::new();
    for b in batches {
        let i = b.schema().index_of("_source").context(what)?;
        let col = datafusion::arrow::compute::cast(b.column(i), &DataType::Utf8).context(what)?;
        let col = col.as_string::<i32>();
        for r in 0..col.len() {
            *m.entry(col.value(r).to_string()).or_insert(0) += 1;
        }
    }
    Ok(m)
}

/// A batch after its source checks.
struct AuditedBatch {
    kept: Vec<RecordBatch>,
    quarantine: Vec<RecordBatch>,
    kept_by_file: std::collections::BTreeMap<String, i64>,
    quarantined_by_file: std::collections::BTreeMap<String, i64>,
}

/// Runs a source's expectations and checks on its decoded batch; an error
/// check that fails fails the ingest with nothing committed.
async fn audit_batch(
    engine: &Engine,
    source: &Source,
    batches: Vec<RecordBatch>,
    run: &RunInfo,
    published: Option<i64>,
) -> Result<AuditedBatch> {
    let table = source.table();
    let what = || format!("checking the batch of {table}");
    let ctx = engine.local_context();
    let schema = batches[0].schema();
    let mem =
        datafusion::datasource::MemTable::try_new(schema.clone(), vec![batches]).context(what)?;
    let df = ctx.read_table(Arc::new(mem)).context(what)?;
    let subject = crate::checks::Subject::source(&table, &source.checks);
    let exp = crate::checks::expectations(&ctx, &subject, df, run).await?;
    let mut results = exp.results;
    results.extend(crate::checks::table_checks(engine, &subject, exp.kept.clone(), run).await?);
    crate::checks::gate(engine, &subject, &results, published).await?;

    let kept = exp.kept.collect().await.context(what)?;
    let kept_by_file = rows_by_file(&kept)?;
    let mut quarantine = vec![];
    let mut quarantined_by_file = std::collections::BTreeMap::new();
    if let Some(q) = exp.quarantine {
        let rows = q.collect().await.context(what)?;
        quarantined_by_file = rows_by_file(&rows)?;
        for b in rows {
            quarantine.push(rule_quarantine_batch(&b, &schema)?);
        }
    }
    Ok(AuditedBatch {
        kept,
        quarantine,
        kept_by_file,
        quarantined_by_file,
    })
}

/// Rows an expectation quarantined, in the quarantine table's shape: the data
/// columns as JSON in `_raw`, the rule in `_error`.
pub(super) fn rule_quarantine_batch(
    b: &RecordBatch,
    data_schema: &SchemaRef,
) -> Result<RecordBatch> {
    use datafusion::arrow::array::AsArray;
    let what = || "quarantining rows".to_string();
    let data_cols: Vec<usize> = data_schema
        .fields()
        .iter()
        .filter(|f| !METADATA_COLUMNS.contains(&f.name().as_str()))
        .filter_map(|f| b.schema().index_of(f.name()).ok())
        .collect();
    let projected = b.project(&data_cols).context(what)?;
    let mut buf = Vec::new();
    {
        let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut buf);
        w.write(&projected).context(what)?;
        w.finish().context(what)?;
    }
    let raw: Vec<String> = String::from_utf8_lossy(&buf)
        .lines()
        .map(str::to_string)
        .collect();
    let text = |name: &str| -> Result<ArrayRef> {
        let i = b.schema().index_of(name).context(what)?;
        datafusion::arrow::compute::cast(b.column(i), &DataType::Utf8).context(what)
    };
    let rule = text("_rule")?;
    let errors: Vec<String> = rule
        .as_string::<i32>()
        .iter()
        .map(|r| format!("expectation failed: {}", r.unwrap_or("")))
        .collect();
    let n = b.num_rows();
    let ingested = b
        .column(b.schema().index_of("_ingested_at").context(what)?)
        .clone();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(raw)),
        Arc::new(StringArray::from(errors)),
        text("_source")?,
        Arc::new(Int64Array::from(vec![None::<i64>; n])),
        ingested,
        text("_batch_id")?,
    ];
    RecordBatch::try_new(quarantine_schema(), cols).context(what)
}
