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
use deltalake::kernel::Action;
use deltalake::kernel::transaction::CommitBuilder;
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
    exists: bool,
    kernel: deltalake::kernel::StructType,
    folder: String,
    url: String,
    actions: Vec<Action>,
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

/// Writes `df`'s rows as Parquet files into a new folder of `target`.
/// `None` (nothing written) for a partitioned table or a schema other than
/// the table's.
pub(crate) async fn stage(
    target: &DeltaTable,
    df: DataFrame,
    name: &str,
) -> Result<Option<Staged>> {
    use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
    let what = || format!("writing {name}");
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let table = target.clone();
    let exists = table.version().is_some();
    if exists {
        let snapshot = table.snapshot().context(what)?;
        if !snapshot.metadata().partition_columns().is_empty() {
            return Ok(None);
        }
        let current = snapshot.snapshot().arrow_schema();
        let same = current.fields().len() == schema.fields().len()
            && current.fields().iter().zip(schema.fields()).all(|(a, b)| {
                a.name() == b.name() && same_delta_type(a.data_type(), b.data_type())
            });
        if !same {
            return Ok(None);
        }
    }
    // A new table's columns, checked before anything is written.
    let kernel: deltalake::kernel::StructType = schema.as_ref().try_into_kernel().context(what)?;
    // The files go into a folder of their own inside the table.
    let folder = format!("part-{}", uuid::Uuid::new_v4());
    let url = format!(
        "{}/{folder}/",
        table.table_url().as_str().trim_end_matches('/')
    );
    let mut options = TableParquetOptions::default();
    options.global.compression = Some("snappy".into());
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
    let mut actions: Vec<Action> = Vec::with_capacity(written.len());
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
        actions.push(Action::Add(deltalake::kernel::Add {
            path: f.location.to_string(),
            size: f.size as i64,
            modification_time: f.last_modified.timestamp_millis(),
            data_change: true,
            stats: Some(crate::file_stats::stats_json(&footer)),
            ..Default::default()
        }));
    }
    Ok(Some(Staged {
        table,
        exists,
        kernel,
        folder,
        url,
        actions,
    }))
}

impl Staged {
    /// The folder's URL, to read the written rows back.
    pub(crate) fn url(&self) -> &str {
        &self.url
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
            table,
            exists,
            kernel,
            mut actions,
            ..
        } = self;
        if !exists {
            // One commit creates the table with its files.
            let table = table
                .create()
                .with_columns(kernel.fields().cloned())
                .with_actions(actions)
                .with_commit_properties(p.commit_properties())
                .await
                .context(what)?;
            return Ok(table);
        }
        let snapshot = table.snapshot().context(what)?;
        if mode == SaveMode::Overwrite {
            actions.extend(
                snapshot
                    .log_data()
                    .iter()
                    .map(|f| Action::Remove(f.remove_action(true))),
            );
        }
        CommitBuilder::from(p.commit_properties())
            .with_actions(actions)
            .build(
                Some(snapshot),
                table.log_store(),
                DeltaOperation::Write {
                    mode,
                    partition_by: None,
                    predicate: None,
                },
            )
            .await
            .context(what)?;
        let mut table = table;
        table.update_state().await.context(what)?;
        Ok(table)
    }
}
