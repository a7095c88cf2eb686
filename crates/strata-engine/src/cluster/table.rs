//! [`LakeTable`]: one version of a Delta table as a plain DataFusion table
//! provider whose scans are DataFusion's own Parquet scans, so that any
//! Ballista scheduler and executor can run them.
//!
//! delta-rs's provider plans a `DeltaScan` node that has no codec, so a plan
//! reading it cannot leave this process. A `LakeTable` is built from the
//! snapshot's log instead: the active files with their partition values and
//! statistics. Its scans keep what delta-rs's gives: files are pruned on
//! partition values and on the log's min/max statistics before any is opened,
//! the planner gets the row counts and sizes, and Parquet row groups are pruned
//! by the pushed-down filters on the executors.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, UInt64Array, new_null_array};
use datafusion::arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::stats::Precision;
use datafusion::common::{Column, DFSchema, ScalarValue, Statistics, project_schema};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_optimizer::pruning::PruningPredicate;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use deltalake::DeltaTable;
use object_store::path::Path as StorePath;
use url::Url;

use crate::error::{Error, Result};

/// Delta reader features a [`LakeTable`] reads correctly: they change how the
/// log is written, not what the data files mean.
const HONOURED_READER_FEATURES: &[&str] = &["timestampNtz", "v2Checkpoint", "vacuumProtocolCheck"];

/// One data file of a table version.
#[derive(Debug, Clone)]
struct LakeFile {
    /// The object's path in its store.
    path: String,
    /// Its path in the table's log (relative to the table).
    rel: String,
    size: u64,
    /// One value per partition column, in [`LakeTable::partition_columns`] order.
    partition_values: Vec<ScalarValue>,
    rows: Option<usize>,
    /// Per table column: (min, max, null count) from the log, where known.
    stats: Vec<Option<(ScalarValue, ScalarValue)>>,
    nulls: Vec<Option<u64>>,
}

/// One version of a Delta table, readable by any DataFusion or Ballista process.
#[derive(Clone)]
pub struct LakeTable {
    name: String,
    /// `s3://bucket`, `file://`, …: the store the files are in.
    store_url: ObjectStoreUrl,
    /// The data files' columns (the table's columns less the partition columns).
    file_schema: SchemaRef,
    partition_fields: Vec<FieldRef>,
    /// File columns then partition columns, as delta-rs's provider orders them.
    schema: SchemaRef,
    files: Arc<Vec<LakeFile>>,
}

impl fmt::Debug for LakeTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LakeTable")
            .field("name", &self.name)
            .field("files", &self.files.len())
            .finish()
    }
}

impl LakeTable {
    /// The table's loaded version; only the files among `only` (full URIs)
    /// when given. Refuses tables whose reader features it cannot honour.
    pub fn try_new(name: &str, table: &DeltaTable, only: Option<&[String]>) -> Result<Self> {
        let user = |m: String| Error::User(format!("{name}: {m}"));
        let snapshot = table
            .snapshot()
            .map_err(|e| user(format!("cannot read the table's log: {e}")))?;
        let protocol = snapshot.protocol();
        if let Some(features) = protocol.reader_features() {
            for f in features {
                let f = f.to_string();
                if !HONOURED_READER_FEATURES.contains(&f.as_str()) {
                    return Err(user(format!(
                        "the table uses the Delta reader feature `{f}`, which the Ballista engine cannot honour yet (it reads {})",
                        HONOURED_READER_FEATURES.join(", ")
                    )));
                }
            }
        }
        let config = snapshot.metadata().configuration();
        if let Some(mode) = config.get("delta.columnMapping.mode")
            && mode != "none"
        {
            return Err(user(format!(
                "the table uses column mapping (`{mode}`), which the Ballista engine cannot honour yet"
            )));
        }
        let full: Arc<Schema> = snapshot.snapshot().arrow_schema();
        let partition_columns: Vec<String> = snapshot.metadata().partition_columns().to_vec();
        let file_fields: Vec<FieldRef> = full
            .fields()
            .iter()
            .filter(|f| !partition_columns.contains(f.name()))
            .cloned()
            .collect();
        let partition_fields: Vec<FieldRef> = partition_columns
            .iter()
            .map(|c| {
                full.field_with_name(c)
                    .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
                    .map_err(|e| user(format!("partition column {c}: {e}")))
            })
            .collect::<Result<_>>()?;
        let file_schema = Arc::new(Schema::new(file_fields.clone()));
        let schema = Arc::new(Schema::new(
            file_fields
                .iter()
                .chain(partition_fields.iter())
                .cloned()
                .collect::<Vec<_>>(),
        ));

        let root = table.table_url().clone();
        let store_url = store_url_of(&root).map_err(user)?;
        let root_path = StorePath::from_url_path(root.path())
            .map_err(|e| user(format!("bad table path {root}: {e}")))?;
        let mut files = Vec::new();
        for f in snapshot.log_data().iter() {
            if f.deletion_vector_descriptor().is_some() {
                return Err(user(
                    "a file has a deletion vector, which the Ballista engine cannot honour yet"
                        .into(),
                ));
            }
            let rel = f.path().to_string();
            let mut path = root_path.clone();
            for seg in rel.split('/').filter(|s| !s.is_empty()) {
                path = path.clone().join(seg);
            }
            if let Some(only) = only {
                let wanted = only.iter().any(|u| u.ends_with(rel.as_str()));
                if !wanted {
                    continue;
                }
            }
            let values = f.partition_values_map();
            let partition_values = partition_fields
                .iter()
                .map(|field| match values.get(field.name()).cloned().flatten() {
                    None => ScalarValue::try_from(field.data_type()),
                    Some(v) => ScalarValue::try_from_string(v, field.data_type()),
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| user(format!("partition values of {rel}: {e}")))?;
            let (stats, nulls) = file_stats(f.stats().as_deref(), &schema);
            files.push(LakeFile {
                path: path.to_string(),
                rel,
                size: f.size().max(0) as u64,
                partition_values,
                rows: f.num_records(),
                stats,
                nulls,
            });
        }
        Ok(Self {
            name: name.to_string(),
            store_url,
            file_schema,
            partition_fields,
            schema,
            files: Arc::new(files),
        })
    }

    /// The files that may hold rows matching all of `filters`, by partition
    /// values and the log's statistics (every file when they cannot tell).
    fn pruned(
        &self,
        state: &dyn Session,
        filters: &[Expr],
    ) -> datafusion::error::Result<Vec<&LakeFile>> {
        let mut files: Vec<&LakeFile> = self.files.iter().collect();
        if let Some(predicate) = conjunction(filters.iter().cloned()) {
            let df_schema = DFSchema::try_from(self.schema.clone())?;
            let expr = state.create_physical_expr(predicate, &df_schema)?;
            // A filter the pruner cannot use keeps every file.
            #[allow(deprecated)]
            let pruning = PruningPredicate::try_new(expr, self.schema.clone());
            if let Ok(pruning) = pruning {
                let stats = FilesStats {
                    table: self,
                    files: &files,
                };
                if let Ok(keep) = pruning.prune(&stats) {
                    files = files
                        .into_iter()
                        .zip(keep)
                        .filter_map(|(f, k)| k.then_some(f))
                        .collect();
                }
            }
        }
        Ok(files)
    }

    /// The files (paths relative to the table, as its log names them) that
    /// may hold rows matching `predicate`.
    pub(crate) fn files_matching(
        &self,
        state: &dyn Session,
        predicate: Expr,
    ) -> datafusion::error::Result<Vec<String>> {
        Ok(self
            .pruned(state, &[predicate])?
            .into_iter()
            .map(|f| f.rel.clone())
            .collect())
    }

    /// The store its files are in (`s3://bucket`, `file://`).
    pub fn store_url(&self) -> &ObjectStoreUrl {
        &self.store_url
    }

    fn table_stats(&self, files: &[&LakeFile]) -> Statistics {
        let mut s = Statistics::new_unknown(&self.schema);
        let rows: Option<usize> = files.iter().map(|f| f.rows).sum();
        s.num_rows = rows.map_or(Precision::Absent, Precision::Exact);
        s.total_byte_size = Precision::Inexact(files.iter().map(|f| f.size as usize).sum());
        s
    }

    fn file_stats(&self, f: &LakeFile) -> Statistics {
        let mut s = Statistics::new_unknown(&self.schema);
        s.num_rows = f.rows.map_or(Precision::Absent, Precision::Exact);
        s.total_byte_size = Precision::Inexact(f.size as usize);
        for (i, c) in s.column_statistics.iter_mut().enumerate() {
            if let Some(Some((min, max))) = f.stats.get(i) {
                // Widened bounds (timestamps) are bounds, not values.
                let exact = self
                    .schema
                    .fields()
                    .get(i)
                    .is_some_and(|f| exact_stats_type(f.data_type()));
                let wrap = |v: &ScalarValue| {
                    if exact {
                        Precision::Exact(v.clone())
                    } else {
                        Precision::Inexact(v.clone())
                    }
                };
                c.min_value = wrap(min);
                c.max_value = wrap(max);
            }
            if let Some(Some(n)) = f.nulls.get(i) {
                c.null_count = Precision::Exact(*n as usize);
            }
        }
        s
    }
}

/// The root of the store a URL is in (`s3://bucket`, `az://container`,
/// `file://`): what object stores are registered and looked up by.
pub(crate) fn store_root(url: &Url) -> String {
    match url.scheme() {
        "file" => "file://".to_string(),
        scheme => format!("{scheme}://{}", url.authority()),
    }
}

/// Where a table's files are, as DataFusion names it.
pub(crate) fn store_url_of(root: &Url) -> std::result::Result<ObjectStoreUrl, String> {
    ObjectStoreUrl::parse(store_root(root)).map_err(|e| format!("bad table URL {root}: {e}"))
}

/// Whether a type's log statistics are exact bounds (delta-rs truncates text,
/// left out, and timestamps to the millisecond, whose maxima are widened by
/// one and used for pruning only).
fn exact_stats_type(t: &DataType) -> bool {
    t.is_integer() || t.is_floating() || matches!(t, DataType::Date32 | DataType::Decimal128(..))
}

/// A timestamp moved by `ms` milliseconds (`None` for other values).
fn widen_ms(v: ScalarValue, ms: i64) -> Option<ScalarValue> {
    Some(match v {
        ScalarValue::TimestampSecond(Some(x), tz) => {
            ScalarValue::TimestampSecond(Some(x + ms.signum()), tz)
        }
        ScalarValue::TimestampMillisecond(Some(x), tz) => {
            ScalarValue::TimestampMillisecond(Some(x + ms), tz)
        }
        ScalarValue::TimestampMicrosecond(Some(x), tz) => {
            ScalarValue::TimestampMicrosecond(Some(x + ms * 1_000), tz)
        }
        ScalarValue::TimestampNanosecond(Some(x), tz) => {
            ScalarValue::TimestampNanosecond(Some(x + ms * 1_000_000), tz)
        }
        _ => return None,
    })
}

type ColumnStats = (Vec<Option<(ScalarValue, ScalarValue)>>, Vec<Option<u64>>);

/// Min/max (of exact types) and null counts per column from a file's log stats.
fn file_stats(json: Option<&str>, schema: &Schema) -> ColumnStats {
    let n = schema.fields().len();
    let (mut mm, mut nulls) = (vec![None; n], vec![None; n]);
    let Some(v) = json.and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok()) else {
        return (mm, nulls);
    };
    let scalar = |v: &serde_json::Value, t: &DataType| -> Option<ScalarValue> {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return None,
        };
        ScalarValue::try_from_string(text, t).ok()
    };
    for (i, f) in schema.fields().iter().enumerate() {
        let t = f.data_type();
        if exact_stats_type(t) || matches!(t, DataType::Timestamp(..)) {
            let min = v.get("minValues").and_then(|m| m.get(f.name()));
            let max = v.get("maxValues").and_then(|m| m.get(f.name()));
            if let (Some(a), Some(b)) = (min, max)
                && let (Some(a), Some(b)) = (scalar(a, t), scalar(b, t))
            {
                mm[i] = if exact_stats_type(t) {
                    Some((a, b))
                } else {
                    // The log keeps timestamps to the millisecond, truncated
                    // (delta-rs; Strata's writers round maxima up): the
                    // minimum is a bound, the maximum one once widened.
                    Some(a).zip(widen_ms(b, 1))
                };
            }
        }
        nulls[i] = v
            .get("nullCount")
            .and_then(|m| m.get(f.name()))
            .and_then(|x| x.as_u64());
    }
    (mm, nulls)
}

/// The files' statistics as DataFusion's pruning reads them.
struct FilesStats<'a> {
    table: &'a LakeTable,
    files: &'a [&'a LakeFile],
}

impl FilesStats<'_> {
    fn bound(&self, column: &Column, max: bool) -> Option<ArrayRef> {
        let i = self.table.schema.index_of(&column.name).ok()?;
        let t = self.table.schema.field(i).data_type();
        let nfile = self.table.file_schema.fields().len();
        let values: Vec<ScalarValue> = self
            .files
            .iter()
            .map(|f| {
                if i >= nfile {
                    f.partition_values[i - nfile].clone()
                } else {
                    match &f.stats[i] {
                        Some((a, b)) => if max { b } else { a }.clone(),
                        None => ScalarValue::try_from(t).unwrap_or(ScalarValue::Null),
                    }
                }
            })
            .collect();
        if values.is_empty() {
            return Some(new_null_array(t, 0));
        }
        ScalarValue::iter_to_array(values).ok()
    }
}

impl PruningStatistics for FilesStats<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bound(column, false)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bound(column, true)
    }

    fn num_containers(&self) -> usize {
        self.files.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let i = self.table.schema.index_of(&column.name).ok()?;
        let nfile = self.table.file_schema.fields().len();
        let counts: UInt64Array = self
            .files
            .iter()
            .map(|f| {
                if i >= nfile {
                    let null = f.partition_values[i - nfile].is_null();
                    f.rows.map(|r| if null { r as u64 } else { 0 })
                } else {
                    f.nulls[i]
                }
            })
            .collect();
        Some(Arc::new(counts))
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        let counts: UInt64Array = self
            .files
            .iter()
            .map(|f| f.rows.map(|r| r as u64))
            .collect();
        Some(Arc::new(counts))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

#[async_trait]
impl TableProvider for LakeTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let files = self.pruned(state, filters)?;
        if files.is_empty() {
            let schema = project_schema(&self.schema, projection)?;
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        // Files spread over the session's partitions, largest first.
        let n = state.config().target_partitions().max(1).min(files.len());
        let mut order: Vec<&LakeFile> = files.clone();
        order.sort_by_key(|f| std::cmp::Reverse(f.size));
        let mut groups: Vec<(u64, Vec<PartitionedFile>)> = vec![(0, Vec::new()); n];
        for f in order {
            let g = groups
                .iter_mut()
                .min_by_key(|(size, _)| *size)
                .ok_or_else(|| datafusion::error::DataFusionError::Internal("no group".into()))?;
            g.0 += f.size;
            g.1.push(
                PartitionedFile::new(f.path.clone(), f.size)
                    .with_partition_values(f.partition_values.clone())
                    .with_statistics(Arc::new(self.file_stats(f))),
            );
        }
        let table_schema = TableSchema::builder(self.file_schema.clone())
            .with_table_partition_cols(self.partition_fields.clone())
            .build();
        // Built directly rather than through `ParquetFormat`, which would tie
        // the scan to this process's object store.
        let source = ParquetSource::new(table_schema)
            .with_table_parquet_options(state.table_options().parquet.clone());
        let config = FileScanConfigBuilder::new(self.store_url.clone(), Arc::new(source))
            .with_file_groups(groups.into_iter().map(|(_, g)| FileGroup::new(g)).collect())
            .with_statistics(self.table_stats(&files))
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }

    fn statistics(&self) -> Option<Statistics> {
        let files: Vec<&LakeFile> = self.files.iter().collect();
        Some(self.table_stats(&files))
    }
}
