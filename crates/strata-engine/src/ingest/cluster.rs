//! File sources read on a Ballista cluster: each new file of a batch is one
//! task of a cluster job ([`IngestExec`]). The executor that runs it reads
//! the file (from object storage, or a folder every executor mounts),
//! decodes it exactly as Strata does locally (types, bad rows, hive
//! columns, drift), writes its rows with the bronze metadata columns as
//! Parquet files into the bronze table, and reports back the row
//! accounting, the bad rows and the files. Strata then commits the whole
//! batch as one Delta version, as it does locally: quarantine first, then
//! bronze with the batch's provenance, then the manifest.
//!
//! A source's checks audit the written files on the cluster before the
//! commit ([`audit_written`]). What executors cannot do yet runs in
//! Strata's process only with `fallback = "local"`
//! ([`crate::cluster::local_step`]): files that bring new columns under
//! `schema_drift = "add_columns"`, expectations that remove rows of a
//! `time_column` source (its interval counts are taken as files are read),
//! and partitioned bronze tables.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::DataFusionError;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use datafusion::prelude::ParquetReadOptions;
use deltalake::kernel::Add;
use deltalake::logstore::ObjectStoreRef;
use futures::StreamExt;
use object_store::ObjectStoreExt as _;
use serde::{Deserialize, Serialize};
use strata_project::{
    ColumnType, CsvOptions, Database, Format, Grain, Http, OnBadRows, SchemaDrift, Source,
    SourceMode,
};
use strata_runtime::{RunInfo, TaskOutput};
use url::Url;

use super::{
    Batch, FileAccount, Found, Shape, commit_batch, db, files, localize, quarantine_batch, rows,
    shape_of, stats, stream, target_for_write, type_family, with_metadata_schema, write_schema,
};
use crate::engine::Engine;
use crate::error::{Context, Error, Result};

/// Ingests `todo` on the cluster and commits it; `None` when this batch
/// must run in Strata's process (allowed by `fallback = "local"`, else an
/// error naming the source and the reason).
pub(super) async fn ingest(
    engine: &Engine,
    source: &Source,
    run: &RunInfo,
    bronze: &deltalake::DeltaTable,
    store: Option<&ObjectStoreRef>,
    todo: &[(Found, String)],
) -> Result<Option<TaskOutput>> {
    let Some(cluster) = engine.cluster.clone() else {
        return Ok(None);
    };
    let table = source.table();
    let here = |why: &str| crate::cluster::local_step(engine, &table, "source read", why);
    if source.time.is_some()
        && source.checks.iter().any(|c| {
            matches!(
                c.on_fail,
                Some(strata_project::OnFail::Drop | strata_project::OnFail::Quarantine)
            )
        })
    {
        // The executors count the intervals' rows as they read; rows the
        // expectations remove afterwards would still be counted.
        here(&format!(
            "reading source `{}`, whose expectations remove rows from the intervals of its time_column,",
            source.name
        ))?;
        return Ok(None);
    }
    if let Ok(snapshot) = bronze.snapshot()
        && !snapshot.metadata().partition_columns().is_empty()
    {
        here(&format!(
            "reading source `{}` into a partitioned table",
            source.name
        ))?;
        return Ok(None);
    }
    let Some((_, first_rel)) = todo.first() else {
        return Ok(None);
    };
    // The first file is read here only to infer a new table's columns.
    let exists = bronze.version().is_some();
    let (_spool, first) = if source.columns.is_none() && !exists {
        let (spool, first) = localize(store, todo[..1].to_vec()).await?;
        (spool, first.into_iter().next().map(|(p, _)| p))
    } else {
        (None, None)
    };
    let Shape {
        columns,
        parquet_target,
    } = shape_of(
        source,
        bronze,
        (first.as_deref().unwrap_or(Path::new("")), first_rel),
        todo.iter().map(|(_, r)| r.as_str()),
    )?;
    let target = write_schema(&columns, source.schema_drift);
    let schema = with_metadata_schema(&target_for_write(source, &parquet_target, &target));
    if exists && !crate::staged::same_columns(bronze, &schema) {
        here(&format!(
            "reading source `{}`, whose files' columns differ from {table}'s,",
            source.name
        ))?;
        return Ok(None);
    }

    let batch_id = format!("{}:{}", run.run_id, source.name);
    let ingested_at = run.started_at.timestamp_micros();
    let mut tasks = Vec::with_capacity(todo.len());
    for (found, rel) in todo {
        let url = match found {
            Found::Local(p) => Url::from_file_path(p)
                .map_err(|_| Error::User(format!("{rel}: not an absolute path")))?
                .to_string(),
            Found::Remote(l) => l.url.clone(),
        };
        tasks.push(FileTask {
            url,
            rel: rel.clone(),
        });
    }
    let spec = IngestSpec {
        columns,
        parquet_target: schema_bytes(&parquet_target)?,
        schema: schema_bytes(&schema)?,
        compare_types: source.format == Format::Parquet && source.columns.is_none() && exists,
        time: source.time.clone(),
        ..IngestSpec::of(source, bronze, ingested_at, &batch_id)?
    };

    // One task per file; the reports come back as one stream.
    let mut reports: Vec<FileReport> = run_job(engine, &cluster, source, spec, &tasks).await?;
    // In the batch's own order of files.
    let order: BTreeMap<&str, usize> = todo
        .iter()
        .enumerate()
        .map(|(i, (_, r))| (r.as_str(), i))
        .collect();
    reports.sort_by_key(|r| order.get(r.rel.as_str()).copied().unwrap_or(usize::MAX));

    let written = stream::Written::Store(bronze.log_store().object_store(None));
    let adds: Vec<Add> = reports.iter().flat_map(|r| r.adds.clone()).collect();
    let refuse = |e: Error| {
        let (written, adds) = (&written, &adds);
        async move {
            written.remove(adds).await;
            Err::<Option<TaskOutput>, Error>(e)
        }
    };
    if reports.len() != todo.len() {
        return refuse(Error::Internal(format!(
            "the cluster reported {} of {} files",
            reports.len(),
            todo.len()
        )))
        .await;
    }
    for r in &reports {
        if let Some(e) = &r.error {
            return refuse(Error::User(format!("cannot ingest {}: {e}", r.rel))).await;
        }
        if let Some(b) = r.bad.first()
            && source.on_bad_rows == OnBadRows::Fail
        {
            return refuse(Error::User(format!(
                "{}:{}: {} (on_bad_rows = \"fail\": nothing of this batch was loaded; fix the file or set on_bad_rows = \"quarantine\")",
                r.rel, b.line, b.error
            )))
            .await;
        }
    }
    if source.schema_drift == SchemaDrift::AddColumns
        && let Some(r) = reports.iter().find(|r| !r.new_columns.is_empty())
    {
        let names: Vec<&str> = r.new_columns.iter().map(|(n, _)| n.as_str()).collect();
        written.remove(&adds).await;
        here(&format!(
            "reading source `{}`, whose file {} brings new columns ({}),",
            source.name,
            r.rel,
            names.join(", ")
        ))?;
        return Ok(None);
    }

    let event = |change: &str, column: &str, ty: String, file: &str| {
        super::schema_event(source, run, change, column, ty, file)
    };
    let mut events = vec![];
    let mut accounts = vec![];
    let mut quarantine = vec![];
    let mut counts: BTreeMap<i64, i64> = BTreeMap::new();
    let mut newest: Option<i64> = None;
    for r in reports {
        for m in &r.missing_columns {
            events.push(event("column_missing", m, String::new(), &r.rel));
        }
        for (column, change) in &r.retyped {
            events.push(event("column_retyped", column, change.clone(), &r.rel));
        }
        if !r.bad.is_empty() {
            match quarantine_batch(&r.bad, ingested_at, &r.rel, &batch_id) {
                Ok(q) => quarantine.push(q),
                Err(e) => return refuse(e).await,
            }
        }
        for (start, n) in r.intervals {
            *counts.entry(start).or_default() += n;
        }
        newest = newest.max(r.newest);
        accounts.push(FileAccount {
            file: r.rel,
            size_bytes: r.size_bytes,
            modified: r.modified,
            rows_read: r.rows_read,
            rows_loaded: r.rows_read - r.bad.len() as i64,
            rows_quarantined: r.bad.len() as i64,
            rows_dropped: 0,
        });
    }
    // Source checks audit the written files on the cluster before the commit.
    let (adds, accounts, quarantine) = if source.checks.is_empty() {
        (adds, accounts, quarantine)
    } else {
        let audited = audit_written(
            engine,
            source,
            run,
            bronze,
            &schema,
            Written {
                store: &written,
                adds: adds.clone(),
                accounts,
                quarantine,
            },
        )
        .await;
        match audited {
            Ok(w) => (w.adds, w.accounts, w.quarantine),
            Err(e) => return refuse(e).await,
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
            accounts,
            schema,
            watermark: None,
            events,
            intervals: source.time.as_ref().map(|_| (counts, newest)),
        },
    )
    .await
    .map(|mut out| {
        out.message = out.message.map(|m| format!("{m}, read on the cluster"));
        Some(out)
    })
}

/// A batch's files written by the executors, not committed yet, with their
/// accounts and the rows their decoding quarantined.
struct Written<'a> {
    store: &'a stream::Written,
    adds: Vec<Add>,
    accounts: Vec<FileAccount>,
    quarantine: Vec<RecordBatch>,
}

/// Runs a source's expectations and checks on the files the executors wrote
/// (queries on the cluster), as the local ingest does on the decoded batch:
/// an error check that fails fails the batch (the caller removes the files);
/// when expectations drop or quarantine rows, the kept rows are written
/// again by the executors in place of the files, the quarantined ones join
/// the batch's quarantine, and the files' accounts say where each row went.
async fn audit_written<'a>(
    engine: &Engine,
    source: &Source,
    run: &RunInfo,
    bronze: &deltalake::DeltaTable,
    schema: &SchemaRef,
    mut w: Written<'a>,
) -> Result<Written<'a>> {
    if w.adds.is_empty() {
        return Ok(w);
    }
    let table = source.table();
    let what = || format!("checking the batch of {table}");
    let ctx = engine.context();
    // The files are listed here when the plan is made.
    let store = crate::cluster::table::store_url_of(bronze.table_url())
        .map_err(|e| Error::Internal(format!("{}: {e}", what())))?;
    engine.register_store(&store, bronze);
    let root = bronze
        .table_url()
        .as_str()
        .trim_end_matches('/')
        .to_string();
    let urls: Vec<String> = w
        .adds
        .iter()
        .map(|a| format!("{root}/{}", a.path))
        .collect();
    let files = ctx
        .read_parquet(urls, ParquetReadOptions::default().schema(schema))
        .await
        .context(what)?;
    let subject = crate::checks::Subject::source(&table, &source.checks);
    let exp = crate::checks::expectations(&ctx, &subject, files, run).await?;
    let mut results = exp.results;
    results.extend(crate::checks::table_checks(engine, &subject, exp.kept.clone(), run).await?);
    crate::checks::gate(engine, &subject, &results, crate::lake::version_of(bronze)).await?;
    let removed = results.iter().any(|r| {
        r.failing_rows > 0
            && r.action
                .as_deref()
                .is_some_and(|a| a.starts_with("dropped") || a.starts_with("quarantined"))
    });
    if !removed {
        return Ok(w);
    }

    // Kept rows per file, counted on the cluster.
    use datafusion::arrow::array::Int64Array;
    use datafusion::functions_aggregate::expr_fn::count;
    use datafusion::prelude::{cast, col, lit};
    let counted = exp
        .kept
        .clone()
        .aggregate(
            vec![cast(col("_source"), DataType::Utf8).alias("f")],
            vec![count(lit(1)).alias("n")],
        )
        .context(what)?
        .collect()
        .await
        .context(what)?;
    let mut kept_by_file: BTreeMap<String, i64> = BTreeMap::new();
    for b in &counted {
        let (Some(f), Some(n)) = (
            b.column(0).as_any().downcast_ref::<StringArray>(),
            b.column(1).as_any().downcast_ref::<Int64Array>(),
        ) else {
            continue;
        };
        for i in 0..b.num_rows() {
            *kept_by_file.entry(f.value(i).to_string()).or_default() += n.value(i);
        }
    }
    let mut quarantined_by_file = BTreeMap::new();
    if let Some(q) = exp.quarantine {
        // Collected once: counted here and quarantined.
        let rows = q.collect().await.context(what)?;
        quarantined_by_file = super::rows_by_file(&rows)?;
        for b in &rows {
            w.quarantine.push(super::rule_quarantine_batch(b, schema)?);
        }
    }
    super::settle_accounts(&mut w.accounts, &kept_by_file, &quarantined_by_file);
    // The kept rows, written again by the executors, replace the files.
    let Some(staged) = crate::staged::stage(bronze, exp.kept, &table).await? else {
        return Err(Error::Internal(format!(
            "{table}: the checked rows cannot be written as the table's files"
        )));
    };
    let kept = staged.into_adds();
    w.store.remove(&w.adds).await;
    w.adds = kept;
    Ok(w)
}

/// Reads a database or API source on one executor, which writes bronze's
/// files; commits the batch as locally (quarantine, bronze with the
/// watermark, manifest).
pub(super) async fn ingest_rows(
    engine: &Engine,
    source: &Source,
    run: &RunInfo,
    bronze: deltalake::DeltaTable,
    watermark: Option<db::Watermark>,
    base: Option<Vec<(String, ColumnType)>>,
) -> Result<TaskOutput> {
    let Some(cluster) = engine.cluster.clone() else {
        return Err(Error::Internal("no cluster".into()));
    };
    let batch_id = format!("{}:{}", run.run_id, source.name);
    let ingested_at = run.started_at.timestamp_micros();
    let spec = IngestSpec {
        rows: Some(RowsSpec {
            name: source.name.clone(),
            mode: source.mode,
            on_bad_rows: source.on_bad_rows,
            database: source.database.clone(),
            http: source.http.clone(),
            base,
            watermark: watermark.clone(),
        }),
        ..IngestSpec::of(source, &bronze, ingested_at, &batch_id)?
    };
    let task = FileTask {
        url: String::new(),
        rel: source.name.clone(),
    };
    let reports: Vec<RowsReport> = run_job(engine, &cluster, source, spec, &[task]).await?;
    let [report] = <[RowsReport; 1]>::try_from(reports).map_err(|r| {
        Error::Internal(format!(
            "the cluster sent {} reports for one source",
            r.len()
        ))
    })?;
    let written = stream::Written::Store(bronze.log_store().object_store(None));
    if let Some(e) = report.error {
        written.remove(&report.adds).await;
        return Err(Error::User(e));
    }
    if source.mode == SourceMode::Cursor && report.fetched == 0 {
        return Ok(super::no_rows_past(&bronze, watermark.as_ref()));
    }
    let Some(c) = report.converted else {
        return Ok(super::no_columns_yet());
    };
    let mut quarantine = vec![];
    for (part, bad) in &c.bad {
        match quarantine_batch(bad, ingested_at, part, &batch_id) {
            Ok(q) => quarantine.push(q),
            Err(e) => {
                written.remove(&report.adds).await;
                return Err(e);
            }
        }
    }
    let events = c.events(source, run);
    let schema = with_metadata_schema(&write_schema(&c.columns, source.schema_drift));
    commit_batch(
        engine,
        source,
        run,
        bronze,
        Batch {
            batch_id,
            data: vec![],
            written: Some((written, report.adds)),
            quarantine,
            accounts: c.accounts,
            schema,
            watermark: report.watermark.or(watermark),
            events,
            intervals: None,
        },
    )
    .await
    .map(|mut out| {
        out.message = out.message.map(|m| format!("{m}, read on the cluster"));
        out
    })
}

/// Runs `spec` over `tasks` as one cluster job (a task per entry) and
/// returns the executors' reports.
async fn run_job<R: serde::de::DeserializeOwned>(
    engine: &Engine,
    cluster: &Arc<crate::cluster::Cluster>,
    source: &Source,
    spec: IngestSpec,
    tasks: &[FileTask],
) -> Result<Vec<R>> {
    let exec: Arc<dyn ExecutionPlan> = Arc::new(IngestExec::new(spec, tasks)?);
    let job: Arc<dyn ExecutionPlan> = Arc::new(crate::cluster::ClusterExec::new(
        Arc::new(CoalescePartitionsExec::new(exec)),
        cluster,
    ));
    let batches = datafusion::physical_plan::collect(job, engine.context().task_ctx())
        .await
        .map_err(|e| Error::External(format!("reading source `{}`: {e}", source.name)))?;
    let mut reports = vec![];
    for b in &batches {
        let Some(col) = b.column(0).as_any().downcast_ref::<StringArray>() else {
            return Err(Error::Internal("an ingest report is not text".into()));
        };
        for i in 0..col.len() {
            reports.push(
                serde_json::from_str(col.value(i))
                    .map_err(|e| Error::Internal(format!("an ingest report: {e}")))?,
            );
        }
    }
    Ok(reports)
}

/// What an executor needs to ingest a batch's files (sent inside the plan).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct IngestSpec {
    format: Format,
    csv: CsvOptions,
    null_values: Vec<String>,
    drift: SchemaDrift,
    /// `on_bad_rows = "fail"`: a file with a bad row writes nothing.
    stop_on_bad_rows: bool,
    columns: Vec<(String, ColumnType)>,
    /// The schema a Parquet source's rows are read as (Arrow IPC).
    parquet_target: Vec<u8>,
    /// The bronze rows' schema, metadata columns included (Arrow IPC).
    schema: Vec<u8>,
    /// Report Parquet columns whose type differs from the table's.
    compare_types: bool,
    /// The bronze table's URL.
    table_url: String,
    ingested_at: i64,
    batch_id: String,
    /// The source's `time_column` and grain: rows are counted per interval.
    time: Option<(String, Grain)>,
    /// For a database or API source: what to read (no files then).
    rows: Option<RowsSpec>,
}

impl IngestSpec {
    /// What every read of `source` into `bronze` carries; no columns (the
    /// executor takes a database's or API's from the rows), no time column.
    fn of(
        source: &Source,
        bronze: &deltalake::DeltaTable,
        ingested_at: i64,
        batch_id: &str,
    ) -> Result<Self> {
        let empty = schema_bytes(&Arc::new(Schema::empty()))?;
        Ok(Self {
            format: source.format,
            csv: source.csv.clone(),
            null_values: source.null_values.clone(),
            drift: source.schema_drift,
            stop_on_bad_rows: source.on_bad_rows == OnBadRows::Fail,
            columns: vec![],
            parquet_target: empty.clone(),
            schema: empty,
            compare_types: false,
            table_url: bronze.table_url().to_string(),
            ingested_at,
            batch_id: batch_id.to_string(),
            time: None,
            rows: None,
        })
    }
}

/// What an executor needs to read a database or API source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RowsSpec {
    name: String,
    mode: SourceMode,
    on_bad_rows: OnBadRows,
    /// The connection (its URL with credentials: plans travel to the
    /// executors, as Spark's JDBC reads do).
    database: Option<Database>,
    /// The API (its headers included).
    http: Option<Http>,
    /// The declared or the table's columns (`None`: the fetch's).
    base: Option<Vec<(String, ColumnType)>>,
    /// A cursor source's watermark.
    watermark: Option<db::Watermark>,
}

impl RowsSpec {
    /// The source as the fetch and the row conversion read it.
    fn source(&self, spec: &IngestSpec) -> Source {
        Source {
            name: self.name.clone(),
            format: spec.format,
            path: String::new(),
            path_as_written: String::new(),
            mode: self.mode,
            on_bad_rows: self.on_bad_rows,
            columns: self.base.clone(),
            csv: spec.csv.clone(),
            null_values: spec.null_values.clone(),
            description: None,
            checks: vec![],
            database: self.database.clone(),
            http: self.http.clone(),
            time: None,
            schema_drift: spec.drift,
            freshness_seconds: None,
        }
    }
}

/// What an executor reports for a database or API source.
#[derive(Debug, Default, Serialize, Deserialize)]
struct RowsReport {
    /// The read failed (nothing was written).
    error: Option<String>,
    /// Rows fetched.
    fetched: usize,
    /// The rows' columns, bad rows and accounting (`None`: no columns yet).
    converted: Option<super::Converted>,
    /// A cursor source's watermark after this batch.
    watermark: Option<db::Watermark>,
    /// The Parquet files written into the table.
    adds: Vec<Add>,
}

/// One file of a batch: its URL (`file://` or an object store's) and its
/// name in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FileTask {
    url: String,
    rel: String,
}

/// What an executor reports for one file.
#[derive(Debug, Default, Serialize, Deserialize)]
struct FileReport {
    rel: String,
    /// The file could not be read or written (nothing of it was written).
    error: Option<String>,
    size_bytes: i64,
    modified: String,
    rows_read: i64,
    bad: Vec<rows::BadRow>,
    new_columns: Vec<(String, ColumnType)>,
    missing_columns: Vec<String>,
    /// Columns whose Parquet type differs from the table's: (column, change).
    retyped: Vec<(String, String)>,
    /// The Parquet files written into the table (paths relative to it).
    adds: Vec<Add>,
    /// Rows per interval start (microseconds) of the time column.
    intervals: BTreeMap<i64, i64>,
    /// The newest time seen (microseconds).
    newest: Option<i64>,
}

fn schema_bytes(schema: &SchemaRef) -> Result<Vec<u8>> {
    let mut out = vec![];
    let mut w = datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut out, schema)
        .map_err(|e| Error::Internal(format!("encoding a schema: {e}")))?;
    w.finish()
        .map_err(|e| Error::Internal(format!("encoding a schema: {e}")))?;
    drop(w);
    Ok(out)
}

fn schema_of(bytes: &[u8]) -> std::result::Result<SchemaRef, String> {
    datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map(|r| r.schema())
        .map_err(|e| format!("decoding a schema: {e}"))
}

/// Reads a batch's files on the executors. Its input holds the files, one
/// per partition (an in-memory scan of [`FileTask`]s as JSON, which
/// Ballista's scheduler hands each task its own slice of); each file yields
/// one row, its report as JSON.
#[derive(Debug)]
pub struct IngestExec {
    spec: Arc<IngestSpec>,
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

/// How an [`IngestExec`] starts in a plan's bytes (Ballista's own nodes are
/// protobuf messages, which never start with 0xff).
const MAGIC: &[u8] = b"\xffstrata-ingest/1\n";

/// The one column of an [`IngestExec`]'s input and of its output.
fn text_schema(name: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)]))
}

impl IngestExec {
    /// Reads `files` as `spec` says, one partition per file.
    pub(crate) fn new(spec: IngestSpec, files: &[FileTask]) -> Result<Self> {
        let schema = text_schema("file");
        let mut partitions = Vec::with_capacity(files.len());
        for f in files {
            let json = serde_json::to_string(f)
                .map_err(|e| Error::Internal(format!("encoding a file task: {e}")))?;
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(StringArray::from(vec![json]))],
            )
            .map_err(|e| Error::Internal(format!("encoding a file task: {e}")))?;
            partitions.push(vec![batch]);
        }
        let input: Arc<dyn ExecutionPlan> =
            datafusion::datasource::memory::MemorySourceConfig::try_new_exec(
                &partitions,
                schema,
                None,
            )
            .map_err(|e| Error::Internal(format!("planning the source read: {e}")))?;
        Ok(Self::over(Arc::new(spec), input))
    }

    fn over(spec: Arc<IngestSpec>, input: Arc<dyn ExecutionPlan>) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(text_schema("report")),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self {
            spec,
            input,
            properties,
        }
    }

    /// Writes the node (without its input, which the plan carries) into a
    /// plan's bytes.
    pub(crate) fn encode(&self, buf: &mut Vec<u8>) -> datafusion::error::Result<()> {
        buf.extend_from_slice(MAGIC);
        serde_json::to_writer(buf, self.spec.as_ref())
            .map_err(|e| DataFusionError::Internal(format!("encoding IngestExec: {e}")))
    }

    /// The node in `buf` over `inputs`, if it is one.
    pub(crate) fn decode(
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
    ) -> Option<datafusion::error::Result<Self>> {
        let json = buf.strip_prefix(MAGIC)?;
        let [input] = inputs else {
            return Some(Err(DataFusionError::Internal(
                "IngestExec has one input".into(),
            )));
        };
        Some(
            serde_json::from_slice(json)
                .map(|spec| Self::over(Arc::new(spec), input.clone()))
                .map_err(|e| DataFusionError::Internal(format!("decoding IngestExec: {e}"))),
        )
    }
}

impl DisplayAs for IngestExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IngestExec: table={}", self.spec.table_url)
    }
}

impl ExecutionPlan for IngestExec {
    fn name(&self) -> &str {
        "IngestExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion::error::Result<TreeNodeRecursion>,
    ) -> datafusion::error::Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        match <[_; 1]>::try_from(children) {
            Ok([input]) => Ok(Arc::new(Self::over(self.spec.clone(), input))),
            Err(_) => Err(DataFusionError::Internal("IngestExec has one input".into())),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        let schema = self.schema();
        let spec = self.spec.clone();
        let out = schema.clone();
        let files = self.input.execute(partition, context.clone())?;
        let stream = files.then(move |batch| {
            let (spec, context, out) = (spec.clone(), context.clone(), out.clone());
            async move {
                let batch = batch?;
                let Some(col) = batch.column(0).as_any().downcast_ref::<StringArray>() else {
                    return Err(DataFusionError::Internal("a file task is not text".into()));
                };
                let mut reports = Vec::with_capacity(col.len());
                for i in 0..col.len() {
                    let task: FileTask = serde_json::from_str(col.value(i)).map_err(|e| {
                        DataFusionError::Internal(format!("decoding a file task: {e}"))
                    })?;
                    let json = match &spec.rows {
                        Some(rows) => {
                            let report =
                                read_rows(&spec, rows, &context).await.unwrap_or_else(|e| {
                                    RowsReport {
                                        error: Some(e),
                                        ..Default::default()
                                    }
                                });
                            serde_json::to_string(&report)
                        }
                        None => {
                            let rel = task.rel.clone();
                            let report =
                                read_file(&spec, task, &context).await.unwrap_or_else(|e| {
                                    FileReport {
                                        rel,
                                        error: Some(e),
                                        ..Default::default()
                                    }
                                });
                            serde_json::to_string(&report)
                        }
                    };
                    reports.push(json.map_err(|e| {
                        DataFusionError::Internal(format!("an ingest report: {e}"))
                    })?);
                }
                RecordBatch::try_new(out, vec![Arc::new(StringArray::from(reports))])
                    .map_err(DataFusionError::from)
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// A file on this executor's disk: the file itself, or a downloaded copy
/// (kept as long as the value lives).
struct LocalFile {
    path: PathBuf,
    size: i64,
    modified: String,
    _spool: Option<tempfile::TempDir>,
}

/// Reads `url` where this executor can: a `file://` path directly, an
/// object by downloading it.
async fn fetch(url: &Url, context: &TaskContext) -> std::result::Result<LocalFile, String> {
    if url.scheme() == "file" {
        let path = url
            .to_file_path()
            .map_err(|_| format!("bad file URL {url}"))?;
        let meta = std::fs::metadata(&path).map_err(|e| {
            format!(
                "{e} (on a cluster, executors read source files themselves: put them on object storage, or in a folder mounted at the same path on every executor)"
            )
        })?;
        return Ok(LocalFile {
            path,
            size: meta.len() as i64,
            modified: meta
                .modified()
                .map(|m| strata_runtime::rfc3339(chrono::DateTime::<chrono::Utc>::from(m)))
                .unwrap_or_default(),
            _spool: None,
        });
    }
    let root =
        ObjectStoreUrl::parse(crate::cluster::table::store_root(url)).map_err(|e| e.to_string())?;
    let store = context
        .runtime_env()
        .object_store(&root)
        .map_err(|e| e.to_string())?;
    let key = object_store::path::Path::from_url_path(url.path()).map_err(|e| e.to_string())?;
    let got = store.get(&key).await.map_err(|e| e.to_string())?;
    let (size, modified) = (
        got.meta.size as i64,
        strata_runtime::rfc3339(got.meta.last_modified),
    );
    let name = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .filter(|n| !n.is_empty())
        .unwrap_or("object")
        .to_string();
    let spool = tempfile::Builder::new()
        .prefix("strata-spool-")
        .tempdir()
        .map_err(|e| format!("creating a spool folder: {e}"))?;
    let path = spool.path().join(name);
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| e.to_string())?;
    let mut bytes = got.into_stream();
    while let Some(chunk) = bytes.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
            .await
            .map_err(|e| e.to_string())?;
    }
    tokio::io::AsyncWriteExt::flush(&mut file)
        .await
        .map_err(|e| e.to_string())?;
    Ok(LocalFile {
        path,
        size,
        modified,
        _spool: Some(spool),
    })
}

/// Reads one file as `spec` says and writes its rows into the table.
async fn read_file(
    spec: &Arc<IngestSpec>,
    task: FileTask,
    context: &TaskContext,
) -> std::result::Result<FileReport, String> {
    let url = Url::parse(&task.url).map_err(|e| format!("bad URL {}: {e}", task.url))?;
    let file = fetch(&url, context).await?;
    let schema = schema_of(&spec.schema)?;
    let parquet_target = schema_of(&spec.parquet_target)?;
    let table = Url::parse(&spec.table_url).map_err(|e| format!("bad table URL: {e}"))?;
    // Written straight into a table on this disk, else into a spool folder
    // and uploaded.
    let (dir, out_spool) =
        stream::folder_for(&table).map_err(|e| format!("creating a spool folder: {e}"))?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let writers = stream::LocalWriters::new(
        &dir,
        schema.clone(),
        stats::bronze_writer_properties(&schema),
        threads,
        (spec.ingested_at, &task.rel, &spec.batch_id),
    )
    .map_err(|e| format!("writing the table: {e}"))?;

    // Decode (streaming a large CSV file into the writers as it goes).
    let (s, path, rel, pt) = (
        spec.clone(),
        file.path.clone(),
        task.rel.clone(),
        parquet_target.clone(),
    );
    let (writers, decoded) = tokio::task::spawn_blocking(move || {
        let partition = files::hive_values(&rel);
        let how = || files::CsvRead {
            columns: &s.columns,
            opts: &s.csv,
            nulls: &s.null_values,
            drift: s.drift,
            partition: &partition,
        };
        let streamed =
            if s.format == Format::Csv && s.time.is_none() && s.drift != SchemaDrift::Rescue {
                let sink = |w: usize, b: Vec<RecordBatch>| writers.put(w, b);
                files::decode_csv_streaming(&path, how(), threads, &sink)
            } else {
                Ok(None)
            };
        let decoded = match streamed {
            Ok(Some(data)) => Ok(data),
            Err(e) => Err(e),
            Ok(None) => match s.format {
                Format::Csv => files::decode_csv_parallel(&path, how(), threads),
                Format::Ndjson => files::decode_ndjson(&path, &s.columns, s.drift, &partition),
                Format::Parquet => files::decode_parquet(&path, &pt, &partition),
                Format::Postgres | Format::Mysql | Format::Http => {
                    Err("this source has no files".to_string())
                }
            },
        };
        (writers, decoded)
    })
    .await
    .map_err(|e| format!("decoder crashed: {e}"))?;
    let mut data = match decoded {
        Ok(d) => d,
        Err(e) => {
            writers.discard();
            return Err(e);
        }
    };
    let mut report = FileReport {
        rel: task.rel.clone(),
        size_bytes: file.size,
        modified: file.modified.clone(),
        rows_read: data.rows_read,
        new_columns: std::mem::take(&mut data.new_columns),
        missing_columns: std::mem::take(&mut data.missing_columns),
        ..Default::default()
    };
    let refused = (spec.stop_on_bad_rows && !data.bad.is_empty())
        || (spec.drift == SchemaDrift::AddColumns && !report.new_columns.is_empty());
    report.bad = std::mem::take(&mut data.bad);
    if refused {
        // Strata stops the batch (or reads it itself): nothing is written.
        writers.discard();
        return Ok(report);
    }
    if spec.compare_types
        && let Ok(found) = files::parquet_schema(&file.path)
    {
        for f in found.fields() {
            if let Ok(t) = parquet_target.field_with_name(f.name())
                && type_family(t.data_type()) != type_family(f.data_type())
            {
                report.retyped.push((
                    f.name().clone(),
                    format!("{} -> {}", t.data_type(), f.data_type()),
                ));
            }
        }
    }
    if let Some((col, grain)) = &spec.time
        && !data.batches.is_empty()
    {
        match count_intervals(&data.batches, col, *grain).await {
            Ok((counts, newest)) => {
                report.intervals = counts;
                report.newest = newest;
            }
            Err(e) => {
                writers.discard();
                return Err(e);
            }
        }
    }
    let batches = std::mem::take(&mut data.batches);
    let adds = tokio::task::spawn_blocking(move || writers.finish_after(|w| w.put(0, batches)))
        .await
        .map_err(|e| format!("writer crashed: {e}"))?
        .map_err(|e| format!("writing the table: {e}"))?;
    if out_spool.is_some() {
        upload_into(&table, &dir, &adds, context).await?;
    }
    report.adds = adds;
    Ok(report)
}

/// Reads a database or API source as `rows` says and writes its rows into
/// the table.
async fn read_rows(
    spec: &IngestSpec,
    rows: &RowsSpec,
    context: &TaskContext,
) -> std::result::Result<RowsReport, String> {
    let source = rows.source(spec);
    let fetched = super::fetch_rows(&source, rows.watermark.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let mut report = RowsReport {
        fetched: fetched.rows.len(),
        watermark: fetched.watermark.clone(),
        ..Default::default()
    };
    if source.mode == SourceMode::Cursor && fetched.rows.is_empty() {
        return Ok(report);
    }
    let started_at = chrono::DateTime::from_timestamp_micros(spec.ingested_at)
        .ok_or_else(|| "bad ingest time".to_string())?;
    let Some(mut c) = super::convert_rows(
        &source,
        &fetched,
        rows.base.clone(),
        started_at,
        &spec.batch_id,
    )
    .map_err(|e| e.to_string())?
    else {
        return Ok(report);
    };
    drop(fetched);
    let schema = with_metadata_schema(&write_schema(&c.columns, spec.drift));
    let data = std::mem::take(&mut c.data);
    report.adds = write_rows(spec, schema, data, context).await?;
    report.converted = Some(c);
    Ok(report)
}

/// Writes rows that carry the metadata columns into the table as Parquet
/// files (uploaded when the table is on object storage); returns their Adds.
async fn write_rows(
    spec: &IngestSpec,
    schema: SchemaRef,
    data: Vec<RecordBatch>,
    context: &TaskContext,
) -> std::result::Result<Vec<Add>, String> {
    let table = Url::parse(&spec.table_url).map_err(|e| format!("bad table URL: {e}"))?;
    let (dir, spool) =
        stream::folder_for(&table).map_err(|e| format!("creating a spool folder: {e}"))?;
    let writers = stream::LocalWriters::new(
        &dir,
        schema.clone(),
        stats::bronze_writer_properties(&schema),
        1,
        (spec.ingested_at, "", &spec.batch_id),
    )
    .map_err(|e| format!("writing the table: {e}"))?;
    let adds = tokio::task::spawn_blocking(move || writers.finish_after(|w| w.put_ready(0, data)))
        .await
        .map_err(|e| format!("writer crashed: {e}"))?
        .map_err(|e| format!("writing the table: {e}"))?;
    if spool.is_some() {
        upload_into(&table, &dir, &adds, context).await?;
    }
    Ok(adds)
}

/// Uploads files written into `dir` into the table at `table` on object storage.
async fn upload_into(
    table: &Url,
    dir: &Path,
    adds: &[Add],
    context: &TaskContext,
) -> std::result::Result<(), String> {
    let root = ObjectStoreUrl::parse(crate::cluster::table::store_root(table))
        .map_err(|e| e.to_string())?;
    let bucket = context
        .runtime_env()
        .object_store(&root)
        .map_err(|e| e.to_string())?;
    let prefix =
        object_store::path::Path::from_url_path(table.path()).map_err(|e| e.to_string())?;
    let store: ObjectStoreRef = Arc::new(object_store::prefix::PrefixStore::new(bucket, prefix));
    stream::upload(&store, dir, adds)
        .await
        .map_err(|e| format!("writing the table: {e}"))
}

/// Rows per interval of `col` and the newest time, as Strata counts them
/// locally.
async fn count_intervals(
    batches: &[RecordBatch],
    col: &str,
    grain: Grain,
) -> std::result::Result<(BTreeMap<i64, i64>, Option<i64>), String> {
    let schema = batches[0].schema();
    if schema.field_with_name(col).is_err() {
        return Err(format!("time_column `{col}` is not a column of the source"));
    }
    let ctx = datafusion::prelude::SessionContext::new();
    let table = datafusion::datasource::MemTable::try_new(schema, vec![batches.to_vec()])
        .map_err(|e| e.to_string())?;
    ctx.register_table("__strata_range", Arc::new(table))
        .map_err(|e| e.to_string())?;
    crate::replace_range::rows_per_interval(&ctx, col, grain)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_proto::physical_plan::AsExecutionPlan;
    use datafusion_proto::protobuf::PhysicalPlanNode;

    /// A CSV source's spec, writing into the table folder `table`.
    fn spec(table: &Path, stop_on_bad_rows: bool) -> IngestSpec {
        let columns = vec![
            ("id".to_string(), ColumnType::Int64),
            ("name".to_string(), ColumnType::Utf8),
        ];
        let data = rows::schema_of(&columns);
        IngestSpec {
            format: Format::Csv,
            csv: CsvOptions {
                header: true,
                delimiter: b',',
                quote: b'"',
            },
            null_values: vec![],
            drift: SchemaDrift::Fail,
            stop_on_bad_rows,
            columns,
            parquet_target: schema_bytes(&data).expect("schema"),
            schema: schema_bytes(&with_metadata_schema(&data)).expect("schema"),
            compare_types: false,
            table_url: Url::from_directory_path(table).expect("url").to_string(),
            ingested_at: 1_700_000_000_000_000,
            batch_id: "run:src".into(),
            time: None,
            rows: None,
        }
    }

    fn tasks(dir: &Path, files: &[(&str, &str)]) -> Vec<FileTask> {
        files
            .iter()
            .map(|(name, text)| {
                let path = dir.join(name);
                std::fs::write(&path, text).expect("write");
                FileTask {
                    url: Url::from_file_path(&path).expect("url").to_string(),
                    rel: format!("data/{name}"),
                }
            })
            .collect()
    }

    /// Runs `plan` after a trip through Strata's codec, as an executor
    /// would receive it; returns the reports by file.
    async fn run(plan: Arc<dyn ExecutionPlan>) -> BTreeMap<String, FileReport> {
        let codec = crate::cluster::StrataCodec::default();
        let ctx = datafusion::prelude::SessionContext::new();
        let proto = PhysicalPlanNode::try_from_physical_plan(plan, &codec).expect("encode");
        let plan = proto
            .try_into_physical_plan(&ctx.task_ctx(), &codec)
            .expect("decode");
        assert_eq!(plan.name(), "IngestExec");
        let batches = datafusion::physical_plan::collect(
            Arc::new(CoalescePartitionsExec::new(plan)),
            ctx.task_ctx(),
        )
        .await
        .expect("run");
        let mut out = BTreeMap::new();
        for b in batches {
            let col = b
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("text");
            for i in 0..col.len() {
                let r: FileReport = serde_json::from_str(col.value(i)).expect("report");
                out.insert(r.rel.clone(), r);
            }
        }
        out
    }

    #[tokio::test]
    async fn each_file_is_read_once_and_written_into_the_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let table = dir.path().join("table");
        let files = tasks(
            dir.path(),
            &[
                ("a.csv", "id,name\n1,x\n2,y\n"),
                ("b.csv", "id,name\n3,z\nfour,w\n5,v\n"),
                ("c.csv", "id,name\n"),
            ],
        );
        let exec = IngestExec::new(spec(&table, false), &files).expect("exec");
        assert_eq!(exec.properties().output_partitioning().partition_count(), 3);
        let reports = run(Arc::new(exec)).await;
        assert_eq!(reports.len(), 3, "{reports:?}");
        let b = &reports["data/b.csv"];
        assert_eq!(b.error, None);
        assert_eq!(b.rows_read, 3);
        assert_eq!(b.bad.len(), 1);
        assert_eq!(b.bad[0].line, 3);
        assert_eq!(reports["data/a.csv"].rows_read, 2);
        // The rows are in the files written, with the metadata columns.
        let ctx = datafusion::prelude::SessionContext::new();
        let mut written = 0;
        for r in reports.values() {
            for add in &r.adds {
                let path = table.join(&add.path);
                assert!(path.is_file(), "{}", path.display());
                let df = ctx
                    .read_parquet(
                        path.to_str().expect("utf8"),
                        datafusion::prelude::ParquetReadOptions::default(),
                    )
                    .await
                    .expect("read");
                let cols: Vec<String> = df
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                assert_eq!(cols, ["id", "name", "_ingested_at", "_source", "_batch_id"]);
                written += df.count().await.expect("count");
            }
        }
        assert_eq!(written, 4);
    }

    #[tokio::test]
    async fn a_bad_row_under_fail_writes_nothing_and_a_missing_file_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let table = dir.path().join("table");
        let mut files = tasks(dir.path(), &[("a.csv", "id,name\n1,x\nbad,y\n")]);
        files.push(FileTask {
            url: Url::from_file_path(dir.path().join("gone.csv"))
                .expect("url")
                .to_string(),
            rel: "data/gone.csv".into(),
        });
        let exec = IngestExec::new(spec(&table, true), &files).expect("exec");
        let reports = run(Arc::new(exec)).await;
        let a = &reports["data/a.csv"];
        assert_eq!(a.bad.len(), 1);
        assert!(a.adds.is_empty());
        let gone = &reports["data/gone.csv"];
        let e = gone.error.as_deref().unwrap_or_default();
        assert!(e.contains("mounted at the same path"), "{e}");
        let left = std::fs::read_dir(&table)
            .map(|d| d.count())
            .unwrap_or_default();
        assert_eq!(left, 0, "files were left in the table");
    }
}
