//! Table maintenance: `strata optimize` compacts a table's small files into
//! larger ones (Delta OPTIMIZE), `strata vacuum` deletes the data files no
//! version within the retention needs (Delta VACUUM). Both are builders that
//! return metrics per table; the CLI prints them.
//!
//! Neither changes a row. OPTIMIZE's commit says so (`dataChange = false`),
//! so models reading the table incrementally find no news in it and tables
//! built from it are not rebuilt. VACUUM keeps the files of rows an
//! incremental model has not read yet, even where OPTIMIZE compacted them.

use std::collections::BTreeSet;
use std::num::NonZeroU64;
use std::time::Instant;

use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use deltalake::DeltaTable;
use deltalake::operations::optimize::OptimizeType;
use deltalake::operations::vacuum::VacuumMode;
use serde::Serialize;
use strata_graph::{Graph, NodeKind};
use strata_project::{Materialization, Project};

use crate::engine::Engine;
use crate::error::{Context, Error, Result};
use crate::lake::{latest_provenance, version_of};

/// The Delta tables of the selected nodes (all when `selected` is None), in
/// DAG order: each source's bronze table and its quarantine, each table
/// model's table and its quarantine. Views have none.
pub fn tables_of(
    project: &Project,
    graph: &Graph,
    selected: Option<&BTreeSet<String>>,
) -> Vec<String> {
    let mut out = vec![];
    for name in graph.order() {
        if selected.is_some_and(|s| !s.contains(name)) {
            continue;
        }
        let Some(node) = graph.node(name) else {
            continue;
        };
        match &node.kind {
            NodeKind::Source(source) => {
                out.push(name.clone());
                if let Some(s) = project.sources.get(source) {
                    out.push(s.quarantine_table());
                }
            }
            NodeKind::Model => {
                let Some(m) = project.models.get(name) else {
                    continue;
                };
                if m.config.materialized == Materialization::View {
                    continue;
                }
                out.push(name.clone());
                out.push(format!("{name}_quarantine"));
            }
        }
    }
    out
}

/// `work` on each of `tables` that exists in the engine's lake, one after
/// the other, under its write lock (calling `before` with each name first).
async fn each_table<T, F>(
    engine: &Engine,
    tables: &[String],
    mut before: impl FnMut(&str),
    mut work: impl FnMut(String, DeltaTable) -> F,
) -> Result<Vec<T>>
where
    F: std::future::Future<Output = Result<T>>,
{
    let mut out = vec![];
    for name in tables {
        before(name);
        let Some(table) = engine.lake().open_existing(name).await? else {
            continue;
        };
        let _lock = engine.write_lock(name).await;
        out.push(work(name.clone(), table).await?);
    }
    Ok(out)
}

/// What OPTIMIZE did to one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Compaction {
    /// The table.
    pub table: String,
    /// Its data files before.
    pub files_before: u64,
    /// Files rewritten (removed from the table's current version).
    pub files_removed: u64,
    /// Files written in their place.
    pub files_added: u64,
    /// Bytes of the files rewritten.
    pub bytes_removed: i64,
    /// Bytes of the files written.
    pub bytes_added: i64,
    /// The table's version afterwards.
    pub version: Option<i64>,
    /// Wall time.
    pub seconds: f64,
}

/// Compacts small files: each table's files smaller than the target size are
/// rewritten, per partition, into files of about that size.
#[derive(Debug, Clone, Default)]
pub struct Optimize {
    target_size: Option<u64>,
}

impl Optimize {
    /// With the table's `delta.targetFileSize`, else 100 MiB, as the target.
    pub fn new() -> Self {
        Self::default()
    }

    /// With files of about `bytes` as the target.
    pub fn with_target_size(mut self, bytes: u64) -> Self {
        self.target_size = Some(bytes);
        self
    }

    /// Compacts each of `tables` that exists in the engine's lake, one after
    /// the other (calling `before` with each name first); a table that does
    /// not exist yet is left out.
    pub async fn execute(
        &self,
        engine: &Engine,
        tables: &[String],
        before: impl FnMut(&str),
    ) -> Result<Vec<Compaction>> {
        each_table(engine, tables, before, |name, table| async move {
            self.one(&name, table).await
        })
        .await
    }

    /// Compacts one table, as loaded (the caller holds its write lock).
    pub(crate) async fn one(&self, name: &str, table: DeltaTable) -> Result<Compaction> {
        let started = Instant::now();
        let files_before = table
            .snapshot()
            .map(|s| s.log_data().num_files() as u64)
            .unwrap_or(0);
        let props = writer_properties(name, &table);
        let mut builder = table
            .optimize()
            .with_type(OptimizeType::Compact)
            .with_writer_properties(props);
        if let Some(size) = self.target_size.and_then(NonZeroU64::new) {
            builder = builder.with_target_size(size);
        }
        let (table, metrics) = builder.await.context(|| format!("optimizing {name}"))?;
        Ok(Compaction {
            table: name.to_string(),
            files_before,
            files_removed: metrics.num_files_removed,
            files_added: metrics.num_files_added,
            bytes_removed: metrics.files_removed.total_size,
            bytes_added: metrics.files_added.total_size,
            version: version_of(&table),
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// How compacted files are written: as the table's own writes are. Bronze
/// files (sources and their quarantines) are uncompressed, in small row
/// groups and without statistics on text columns (see
/// [`crate::ingest::stats`]: DataFusion misuses those of text cast to
/// numbers); models' files are Snappy-compressed.
fn writer_properties(name: &str, table: &DeltaTable) -> WriterProperties {
    match table.snapshot() {
        Ok(s) if name.starts_with("bronze.") => {
            crate::ingest::stats::bronze_writer_properties(&s.snapshot().arrow_schema())
        }
        _ => WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    }
}

/// How many files OPTIMIZE would rewrite: those smaller than the table's
/// target file size (`delta.targetFileSize`, else 100 MiB) in partitions
/// that have more than one.
pub(crate) fn small_files(table: &DeltaTable) -> usize {
    use deltalake::table::config::TablePropertiesExt as _;
    let Ok(snapshot) = table.snapshot() else {
        return 0;
    };
    let target = snapshot.table_config().target_file_size().get();
    let mut by_partition: std::collections::HashMap<Vec<(String, Option<String>)>, usize> =
        Default::default();
    for f in snapshot.log_data() {
        if u64::try_from(f.size()).unwrap_or(0) < target {
            let mut partition: Vec<_> = f.partition_values_map().into_iter().collect();
            partition.sort();
            *by_partition.entry(partition).or_default() += 1;
        }
    }
    by_partition.values().filter(|n| **n > 1).sum()
}

/// After a run's commit to `name` (`table`, as loaded then): compacts it
/// once it has `threshold` small files (`[project] auto_compact`). A failure
/// is logged, not raised: the commit it follows is published, and the
/// table reads the same uncompacted.
pub(crate) async fn auto_compact(
    engine: &Engine,
    name: &str,
    table: &DeltaTable,
    threshold: usize,
) {
    if small_files(table) < threshold {
        return;
    }
    let done = async {
        let _lock = engine.write_lock(name).await;
        // The newest version: another commit may have come since.
        let table = engine.lake().open(name).await?;
        Optimize::new().one(name, table).await
    }
    .await;
    match done {
        Ok(c) if c.files_removed > 0 => tracing::info!(
            table = name,
            files_removed = c.files_removed,
            files_added = c.files_added,
            "compacted small files"
        ),
        Ok(_) => {}
        Err(err) => tracing::warn!(table = name, error = %err, "compacting small files failed"),
    }
}

/// What VACUUM did (or with a dry run, would do) to one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cleanup {
    /// The table.
    pub table: String,
    /// The files deleted (or that would be), relative to the table's folder.
    pub files: Vec<String>,
    /// Whether nothing was deleted (a dry run).
    pub dry_run: bool,
    /// Versions whose files were kept for incremental models that have not
    /// read them yet.
    pub kept_versions: Vec<i64>,
    /// Wall time.
    pub seconds: f64,
}

/// Deletes data files that no version within the retention period uses: the
/// files OPTIMIZE and rewrites removed, and files no commit ever added (left
/// by failed writes). Time travel to versions older than the retention
/// stops working.
#[derive(Debug, Clone)]
pub struct Vacuum {
    retention_hours: Option<u64>,
    enforce_retention: bool,
    dry_run: bool,
}

impl Default for Vacuum {
    fn default() -> Self {
        Self {
            retention_hours: None,
            enforce_retention: true,
            dry_run: false,
        }
    }
}

impl Vacuum {
    /// With each table's `delta.deletedFileRetentionDuration` (7 days by
    /// default) as the retention.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps files removed less than `hours` ago. A retention shorter than the
    /// table's own is refused unless [`Vacuum::unsafe_retention`].
    pub fn with_retention_hours(mut self, hours: u64) -> Self {
        self.retention_hours = Some(hours);
        self
    }

    /// Allows a retention shorter than the table's configured one (readers of
    /// older versions, and writers still running, may then lose files).
    pub fn unsafe_retention(mut self) -> Self {
        self.enforce_retention = false;
        self
    }

    /// Lists what would be deleted, deleting nothing.
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    /// Vacuums each of `tables` that exists in the engine's lake (calling
    /// `before` with each name first).
    pub async fn execute(
        &self,
        engine: &Engine,
        tables: &[String],
        before: impl FnMut(&str),
    ) -> Result<Vec<Cleanup>> {
        each_table(engine, tables, before, |name, table| async move {
            self.one(engine, &name, table).await
        })
        .await
    }

    async fn one(&self, engine: &Engine, name: &str, table: DeltaTable) -> Result<Cleanup> {
        let started = Instant::now();
        let keep = unread_versions(engine, name, &table).await?;
        let min_hours = {
            use deltalake::table::config::TablePropertiesExt as _;
            table
                .snapshot()
                .map(|s| s.table_config().deleted_file_retention_duration().as_secs() / 3600)
                .unwrap_or(168)
        };
        let mut builder = table
            .vacuum()
            .with_mode(VacuumMode::Full)
            .with_dry_run(self.dry_run)
            .with_enforce_retention_duration(self.enforce_retention);
        if let Some(h) = self.retention_hours {
            if self.enforce_retention && h < min_hours {
                return Err(Error::User(format!(
                    "{name}: a retention of {h} hours is shorter than the table's {min_hours} hours (`delta.deletedFileRetentionDuration`): readers of older versions and writes still running could lose their files. Pass --unsafe-retention (`\"unsafe_retention\": true` through the API) to vacuum anyway"
                )));
            }
            let hours = i64::try_from(h)
                .ok()
                .filter(|h| *h <= 24 * 365 * 1000)
                .ok_or_else(|| Error::User(format!("a retention of {h} hours is too long")))?;
            builder = builder.with_retention_period(chrono::Duration::hours(hours));
        }
        if !keep.is_empty() {
            let versions: Vec<u64> = keep.iter().map(|v| *v as u64).collect();
            builder = builder.with_keep_versions(&versions);
        }
        let (_, metrics) = builder.await.context(|| format!("vacuuming {name}"))?;
        let mut files = metrics.files_deleted;
        files.sort();
        Ok(Cleanup {
            table: name.to_string(),
            files,
            dry_run: metrics.dry_run,
            kept_versions: keep,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// The versions whose files incremental models reading `name` still need:
/// for each such model that read an older version, the last version that
/// had each file of rows it has not read and OPTIMIZE has since compacted.
async fn unread_versions(engine: &Engine, name: &str, table: &DeltaTable) -> Result<Vec<i64>> {
    let Some(current) = version_of(table) else {
        return Ok(vec![]);
    };
    // A quarantine table's readers hang off its source's or model's node.
    let node = engine.graph().node(name).or_else(|| {
        let base = name.strip_suffix("_quarantine")?;
        engine.graph().node(base)
    });
    let readers = node.map(|n| n.downstream.clone()).unwrap_or_default();
    let mut keep = BTreeSet::new();
    for reader in readers {
        let incremental = engine
            .project()
            .models
            .get(&reader)
            .is_some_and(|m| m.config.materialized == Materialization::Incremental);
        if !incremental {
            continue;
        }
        let Some(t) = engine.lake().open_existing(&reader).await? else {
            continue;
        };
        let Some(read) = latest_provenance(&t)
            .await?
            .and_then(|p| p.upstream_versions.get(name).copied())
        else {
            continue;
        };
        if read >= current {
            continue;
        }
        if let Some(changes) = crate::lake::data_changes(&table.log_store(), read, current).await? {
            keep.extend(changes.compacted.keys().copied());
        }
    }
    Ok(keep.into_iter().collect())
}
