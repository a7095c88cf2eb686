//! Model results written as Parquet files into a new folder of their table
//! (by DataFusion's parallel Parquet writer here, or by Ballista's executors
//! on a cluster), then committed by Strata in one Delta transaction, with
//! each file's statistics read from its footer ([`crate::file_stats`]).
//! Between the two steps the files can be checked (a merge model's keys) and
//! discarded.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::DataFrame;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add};
use deltalake::protocol::{DeltaOperation, SaveMode};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;

use crate::error::{Context, Error, Result};
use crate::lake::Provenance;

/// Replaces `target`'s rows with `df`'s (`SaveMode::Overwrite`) or adds them
/// (`SaveMode::Append`) in one commit, the files written first ([`stage`]).
/// `None` when this path does not apply (a partitioned table, or a schema
/// that changes): the caller writes the usual way.
pub(crate) async fn write(
    target: &DeltaTable,
    df: DataFrame,
    p: &Provenance,
    name: &str,
    mode: SaveMode,
) -> Result<Option<DeltaTable>> {
    match stage(target, df, name).await? {
        Some(staged) => staged.commit(p, name, mode).await.map(Some),
        None => Ok(None),
    }
}

/// Files written into a folder of a table, not committed yet.
pub(crate) struct Staged {
    table: DeltaTable,
    schema: SchemaRef,
    folder: String,
    url: String,
    adds: Vec<Add>,
    /// The files' columns are not the existing table's: an overwrite
    /// commits the new schema with them.
    new_schema: bool,
}

/// Whether `table` (existing) has `new`'s columns: the same names, in order,
/// of the same Delta types.
pub(crate) fn same_columns(table: &DeltaTable, new: &datafusion::arrow::datatypes::Schema) -> bool {
    let Ok(snapshot) = table.snapshot() else {
        return false;
    };
    let current = snapshot.snapshot().arrow_schema();
    current.fields().len() == new.fields().len()
        && current
            .fields()
            .iter()
            .zip(new.fields())
            .all(|(a, b)| a.name() == b.name() && same_delta_type(a.data_type(), b.data_type()))
}

/// Whether two column types are the same Delta type (`Utf8` and `Utf8View`
/// both are `string`, for instance).
fn same_delta_type(
    a: &datafusion::arrow::datatypes::DataType,
    b: &datafusion::arrow::datatypes::DataType,
) -> bool {
    use deltalake::kernel::DataType as K;
    use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
    let ka: std::result::Result<K, _> = a.try_into_kernel();
    let kb: std::result::Result<K, _> = b.try_into_kernel();
    matches!((ka, kb), (Ok(x), Ok(y)) if x == y)
}

/// Rows per row group of every Parquet file Strata writes (bronze and
/// models): readers hold a row group's column chunks and writers buffer one.
/// DuckDB writes 122,880.
pub(crate) const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Writes `df`'s rows as Parquet files into a new folder of `target`.
/// `None` (nothing written) for a partitioned table or a schema other than
/// the table's.
pub(crate) async fn stage(
    target: &DeltaTable,
    df: DataFrame,
    name: &str,
) -> Result<Option<Staged>> {
    stage_files(target, df, name, false).await
}

/// As [`stage`], for an overwrite that may change the table's columns: only
/// a partitioned table is refused, and committing the files as an
/// overwrite records their schema as the table's.
#[cfg(feature = "ballista")]
pub(crate) async fn stage_new_schema(
    target: &DeltaTable,
    df: DataFrame,
    name: &str,
) -> Result<Option<Staged>> {
    stage_files(target, df, name, true).await
}

async fn stage_files(
    target: &DeltaTable,
    df: DataFrame,
    name: &str,
    any_columns: bool,
) -> Result<Option<Staged>> {
    use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
    let what = || format!("writing {name}");
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let table = target.clone();
    let mut new_schema = false;
    if table.version().is_some() {
        let snapshot = table.snapshot().context(what)?;
        if !snapshot.metadata().partition_columns().is_empty() {
            return Ok(None);
        }
        if !same_columns(&table, &schema) {
            if !any_columns {
                return Ok(None);
            }
            new_schema = true;
        }
    }
    // A new table's columns, checked before anything is written.
    let _: deltalake::kernel::StructType = schema.as_ref().try_into_kernel().context(what)?;
    // The files go into a folder of their own inside the table.
    let folder = format!("part-{}", uuid::Uuid::new_v4());
    let url = format!(
        "{}/{folder}/",
        table.table_url().as_str().trim_end_matches('/')
    );
    let mut options = TableParquetOptions::default();
    options.global.compression = Some("snappy".into());
    // A writer holds a whole row group until it is flushed, a reader its
    // column chunks: DataFusion's default of 1,048,576 rows cost ~100 MB per
    // file written in parallel for TPC-H lineitem.
    options.global.max_row_group_size = ROW_GROUP_ROWS;
    df.write_parquet(&url, DataFrameWriteOptions::new(), Some(options))
        .await
        .context(what)?;

    // Each written file becomes an Add action, its statistics from its footer.
    let store = table.log_store().object_store(None);
    let written: Vec<object_store::ObjectMeta> = store
        .list(Some(&StorePath::from(folder.as_str())))
        .try_collect()
        .await
        .map_err(|e| Error::Internal(format!("{}: listing the written files: {e}", what())))?;
    let mut adds: Vec<Add> = Vec::with_capacity(written.len());
    for f in written
        .into_iter()
        .filter(|f| f.location.as_ref().ends_with(".parquet"))
    {
        // (Deprecated in favour of hand-written readers; it is what DataFusion uses.)
        #[allow(deprecated)]
        let reader = datafusion::parquet::arrow::async_reader::ParquetObjectReader::new(
            store.clone(),
            f.location.clone(),
        )
        .with_file_size(f.size);
        let footer = datafusion::parquet::arrow::ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(|e| Error::Internal(format!("{}: reading {}: {e}", what(), f.location)))?
            .metadata()
            .clone();
        adds.push(Add {
            path: f.location.to_string(),
            size: f.size as i64,
            modification_time: f.last_modified.timestamp_millis(),
            data_change: true,
            stats: Some(crate::file_stats::stats_json(&footer)),
            ..Default::default()
        });
    }
    Ok(Some(Staged {
        table,
        schema,
        folder,
        url,
        adds,
        new_schema,
    }))
}

impl Staged {
    /// The folder's URL, to read the written rows back.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The written files as Add actions, for a commit of the caller's own
    /// (the files stay; nothing is committed).
    #[cfg(feature = "ballista")]
    pub(crate) fn into_adds(self) -> Vec<Add> {
        self.adds
    }

    /// Deletes the written files (they are not committed).
    pub(crate) async fn discard(self) {
        let store = self.table.log_store().object_store(None);
        let files = store
            .list(Some(&StorePath::from(self.folder.as_str())))
            .map_ok(|m| m.location)
            .boxed();
        let _ = store.delete_stream(files).try_collect::<Vec<_>>().await;
    }

    /// Commits the files: they replace the table's rows
    /// (`SaveMode::Overwrite`) or join them (`SaveMode::Append`); a table that
    /// does not exist yet is created by this commit.
    pub(crate) async fn commit(
        self,
        p: &Provenance,
        name: &str,
        mode: SaveMode,
    ) -> Result<DeltaTable> {
        let what = || format!("writing {name}");
        let Staged {
            mut table,
            schema,
            adds,
            new_schema,
            ..
        } = self;
        if new_schema && mode == SaveMode::Overwrite {
            overwrite_with_schema(&table, adds, &schema, p.commit_properties())
                .await
                .context(what)?;
        } else {
            commit_files(&table, adds, &schema, p.commit_properties(), mode)
                .await
                .context(what)?;
        }
        table.update_state().await.context(what)?;
        Ok(table)
    }
}

#[cfg(feature = "ballista")]
impl Staged {
    /// Commits the files in place of the table's files named in `replaced`
    /// (paths as the log names them), as an overwrite of the rows matching
    /// `predicate`: one Delta version, as delta-rs's replace-where writes.
    pub(crate) async fn commit_replacing(
        self,
        replaced: &[String],
        predicate: &str,
        p: &Provenance,
        name: &str,
    ) -> Result<DeltaTable> {
        let what = || format!("writing {name}");
        let Staged {
            mut table, adds, ..
        } = self;
        let gone: std::collections::HashSet<&str> = replaced.iter().map(String::as_str).collect();
        let mut actions = removes(&table, |path| gone.contains(path)).context(what)?;
        actions.extend(adds.into_iter().map(Action::Add));
        commit_write(
            &table,
            actions,
            p.commit_properties(),
            SaveMode::Overwrite,
            Some(predicate.to_string()),
        )
        .await
        .context(what)?;
        table.update_state().await.context(what)?;
        Ok(table)
    }
}

/// Replaces every file of `table` (existing) by `adds`, whose columns are
/// `schema`, recording `schema` as the table's in the same version.
async fn overwrite_with_schema(
    table: &DeltaTable,
    adds: Vec<Add>,
    schema: &datafusion::arrow::datatypes::Schema,
    commit: CommitProperties,
) -> std::result::Result<i64, deltalake::DeltaTableError> {
    use deltalake::kernel::MetadataExt as _;
    use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
    let kernel: deltalake::kernel::StructType = schema.try_into_kernel()?;
    let metadata = table.snapshot()?.metadata().clone().with_schema(&kernel)?;
    let mut actions = vec![Action::Metadata(metadata)];
    actions.extend(removes(table, |_| true)?);
    actions.extend(adds.into_iter().map(Action::Add));
    commit_write(table, actions, commit, SaveMode::Overwrite, None).await
}

/// Remove actions for the files of `table` whose log path `which` picks.
fn removes(
    table: &DeltaTable,
    which: impl Fn(&str) -> bool,
) -> std::result::Result<Vec<Action>, deltalake::DeltaTableError> {
    Ok(table
        .snapshot()?
        .log_data()
        .iter()
        .filter(|f| which(f.path().as_ref()))
        .map(|f| Action::Remove(f.remove_action(true)))
        .collect())
}

/// Commits `actions` to the existing `table` as one Write (of rows matching
/// `predicate`, when given); returns the version.
async fn commit_write(
    table: &DeltaTable,
    actions: Vec<Action>,
    commit: CommitProperties,
    mode: SaveMode,
    predicate: Option<String>,
) -> std::result::Result<i64, deltalake::DeltaTableError> {
    let done = CommitBuilder::from(commit)
        .with_actions(actions)
        .build(
            Some(table.snapshot()?),
            table.log_store(),
            DeltaOperation::Write {
                mode,
                partition_by: None,
                predicate,
            },
        )
        .await?;
    Ok(done.version as i64)
}

/// Commits Parquet files already written into `table` as one Delta version:
/// they replace the table's rows (`SaveMode::Overwrite`) or join them
/// (`SaveMode::Append`); a table that does not exist yet is created, with
/// `schema`'s columns, by that same commit. Returns the version.
pub(crate) async fn commit_files(
    table: &DeltaTable,
    adds: Vec<Add>,
    schema: &datafusion::arrow::datatypes::Schema,
    commit: CommitProperties,
    mode: SaveMode,
) -> std::result::Result<i64, deltalake::DeltaTableError> {
    use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
    let mut actions: Vec<Action> = adds.into_iter().map(Action::Add).collect();
    if table.version().is_none() {
        let kernel: deltalake::kernel::StructType = schema.try_into_kernel()?;
        let created = table
            .clone()
            .create()
            .with_columns(kernel.fields().cloned())
            .with_actions(actions)
            .with_commit_properties(commit)
            .await?;
        return Ok(created.version().map_or(0, |v| v as i64));
    }
    if mode == SaveMode::Overwrite {
        actions.extend(removes(table, |_| true)?);
    }
    commit_write(table, actions, commit, mode, None).await
}
