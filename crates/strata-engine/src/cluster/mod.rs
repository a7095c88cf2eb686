//! Scale-out on an Apache DataFusion Ballista cluster (`engine = "ballista://HOST:PORT"`).
//!
//! Strata plans every query itself, as on the local engine: the same SQL, the
//! same optimizer, the same tables. Lake tables are registered as
//! [`table::LakeTable`]s, whose scans are DataFusion's own Parquet scans of the
//! snapshot's files. The physical plan is then cut: each largest part that
//! Ballista can serialize (scans, filters, joins, aggregations, sorts, windows,
//! shuffles) is sent to the scheduler as one job and its result streamed back
//! ([`ClusterExec`]). What cannot be serialized stays in this process: the
//! Delta commit, and delta-rs's own operators (its MERGE and its
//! `replace_where` read the target table through a scan node that has no
//! codec; a merge into an unpartitioned table is therefore a rewrite on the
//! cluster instead). Those data-reading operators run here only with
//! `fallback = "local"`; otherwise the step fails and names them.

pub mod process;
pub mod table;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ballista_core::extension::SessionConfigExt;
use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::DataFusionError;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::{Distribution, Partitioning};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use datafusion::prelude::SessionConfig;
use datafusion_proto::physical_plan::{
    AsExecutionPlan, PhysicalExtensionCodec, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::TryStreamExt;

/// Operators that may stay in Strata's process on a cluster: they only pass
/// rows on (counting them) to the Delta writer, which is the commit step.
const PLUMBING: &[&str] = &["MetricObserverExec", "CoalescePartitionsExec"];

/// Ballista's codec with Strata's own plan nodes added (a source read,
/// [`crate::ingest::cluster::IngestExec`]): what Strata's client, scheduler
/// and executors encode and decode plans with.
#[derive(Debug, Default)]
pub struct StrataCodec {
    ballista: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for StrataCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        if let Some(node) = crate::ingest::cluster::IngestExec::decode(buf, inputs) {
            return Ok(Arc::new(node?));
        }
        self.ballista.try_decode(buf, inputs, ctx, converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> datafusion::error::Result<()> {
        if let Some(ingest) = node.downcast_ref::<crate::ingest::cluster::IngestExec>() {
            return ingest.encode(buf);
        }
        self.ballista.try_encode(node, buf, converter)
    }
}

/// Where the cluster is and what may run outside it.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The scheduler's gRPC URL (`http://HOST:PORT`).
    scheduler_url: String,
    /// The setting as the user wrote it (`ballista://HOST:PORT`), for messages.
    engine: String,
    /// `fallback = "local"`: operators the cluster cannot run run here instead.
    fallback_local: bool,
}

impl Cluster {
    /// The cluster of an `engine = "ballista://HOST:PORT"` setting.
    pub fn new(engine: &str, fallback_local: bool) -> Self {
        let addr = engine
            .strip_prefix("ballista://")
            .unwrap_or(engine)
            .trim_end_matches('/');
        Self {
            scheduler_url: format!("http://{addr}"),
            engine: engine.to_string(),
            fallback_local,
        }
    }

    /// The engine setting, `ballista://HOST:PORT`.
    pub fn engine(&self) -> &str {
        &self.engine
    }

    /// A session configuration that Ballista accepts (its restricted
    /// settings, e.g. no dynamic filters across stages).
    pub(crate) fn session_config() -> SessionConfig {
        SessionConfig::new_with_ballista()
    }

    /// The query planner of a cluster session: `inner` plans, then the plan
    /// is cut into cluster jobs.
    pub(crate) fn planner(
        self: &Arc<Self>,
        inner: Arc<dyn QueryPlanner + Send + Sync>,
    ) -> Arc<ClusterPlanner> {
        Arc::new(ClusterPlanner {
            inner,
            cluster: self.clone(),
        })
    }
}

tokio::task_local! {
    /// Operators the current task ran in this process instead of the cluster.
    static LOCAL_OPERATORS: Arc<Mutex<BTreeSet<String>>>;
}

/// Runs `f` recording the operators its plans ran outside the cluster
/// (allowed by `fallback = "local"`); returns them with `f`'s output.
pub async fn recording_local<F: std::future::Future>(f: F) -> (F::Output, Vec<String>) {
    let set = Arc::new(Mutex::new(BTreeSet::new()));
    let out = LOCAL_OPERATORS.scope(set.clone(), f).await;
    let ops = set
        .lock()
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default();
    (out, ops)
}

/// A step that runs in Strata's process whatever the engine (delta-rs's
/// MERGE and `replace_where` plan and run their own operators): allowed on a
/// cluster only with
/// `fallback = "local"`, and then recorded so the run says so.
pub(crate) fn local_step(
    engine: &crate::Engine,
    model: &str,
    what: &str,
    why: &str,
) -> crate::Result<()> {
    let Some(cluster) = &engine.cluster else {
        return Ok(());
    };
    if !cluster.fallback_local {
        return Err(crate::Error::User(format!(
            "{model}: {why} runs in Strata's process, not on the Ballista cluster ({}); set fallback = \"local\" in strata.toml to let it run here",
            cluster.engine
        )));
    }
    let _ = LOCAL_OPERATORS.try_with(|s| {
        if let Ok(mut s) = s.lock() {
            s.insert(what.to_string());
        }
    });
    Ok(())
}

/// Plans as the local engine does, then sends each serializable part of the
/// plan to the cluster.
pub struct ClusterPlanner {
    inner: Arc<dyn QueryPlanner + Send + Sync>,
    cluster: Arc<Cluster>,
}

impl fmt::Debug for ClusterPlanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterPlanner")
            .field("cluster", &self.cluster.engine)
            .finish()
    }
}

#[async_trait]
impl QueryPlanner for ClusterPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn Session,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let plan = self
            .inner
            .create_physical_plan(logical_plan, session_state)
            .await?;
        let mut cut = Cut {
            codec: StrataCodec::default(),
            cluster: &self.cluster,
            local: BTreeSet::new(),
        };
        let plan = cut.distribute(plan, true)?;
        if tracing::enabled!(tracing::Level::DEBUG) {
            let shown = datafusion::physical_plan::displayable(plan.as_ref()).indent(true);
            tracing::debug!(plan = %shown, "plan cut for the cluster");
        }
        let local: Vec<String> = cut
            .local
            .into_iter()
            .filter(|n| !PLUMBING.contains(&n.as_str()))
            .collect();
        if !local.is_empty() {
            if !self.cluster.fallback_local {
                return Err(DataFusionError::Plan(format!(
                    "this step needs {}, which the Ballista cluster ({}) cannot run (no codec carries it to the executors); set fallback = \"local\" in strata.toml to run such steps in Strata's process",
                    local.join(", "),
                    self.cluster.engine
                )));
            }
            tracing::warn!(operators = %local.join(", "), "running outside the cluster (fallback = \"local\")");
            let _ = LOCAL_OPERATORS.try_with(|s| {
                if let Ok(mut s) = s.lock() {
                    s.extend(local.iter().cloned());
                }
            });
        }
        Ok(plan)
    }
}

/// Cuts a physical plan into cluster jobs.
struct Cut<'a> {
    codec: StrataCodec,
    cluster: &'a Cluster,
    /// Operators left in this process because they cannot be serialized.
    local: BTreeSet<String>,
}

impl Cut<'_> {
    fn serializable(&self, plan: &Arc<dyn ExecutionPlan>) -> bool {
        PhysicalPlanNode::try_from_physical_plan(plan.clone(), &self.codec).is_ok()
    }

    /// Replaces each largest serializable part of `plan` by a cluster job.
    /// `flexible`: the consumer accepts any partitioning (so a job's single
    /// output partition may replace several).
    fn distribute(
        &mut self,
        plan: Arc<dyn ExecutionPlan>,
        flexible: bool,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let children = plan.children();
        if self.serializable(&plan) {
            let parts = plan.output_partitioning().partition_count();
            if parts == 1 {
                return Ok(Arc::new(ClusterExec::new(plan, self.cluster)));
            }
            if flexible {
                let unordered = plan.output_ordering().is_none();
                let one: Arc<dyn ExecutionPlan> = Arc::new(CoalescePartitionsExec::new(plan));
                let job: Arc<dyn ExecutionPlan> = Arc::new(ClusterExec::new(one, self.cluster));
                if !unordered {
                    return Ok(job);
                }
                // The job's rows arrive as one stream: spread them again so
                // that what stays here (the Delta writer encoding Parquet)
                // uses as many cores as the plan did.
                return Ok(Arc::new(RepartitionExec::try_new(
                    job,
                    Partitioning::RoundRobinBatch(parts),
                )?));
            }
            if children.is_empty() {
                // A scan whose partitioning a local consumer relies on stays here.
                self.local.insert(plan.name().to_string());
                return Ok(plan);
            }
        } else if children.iter().all(|c| self.serializable(c)) {
            // The lowest operator that cannot travel is what keeps this part here.
            self.local.insert(plan.name().to_string());
        }
        if children.is_empty() {
            return Ok(plan);
        }
        #[allow(deprecated)]
        let required = plan.required_input_distribution();
        let mut new_children = Vec::with_capacity(children.len());
        for (i, child) in children.into_iter().enumerate() {
            let flex = matches!(
                required.get(i),
                None | Some(Distribution::UnspecifiedDistribution)
                    | Some(Distribution::SinglePartition)
            );
            new_children.push(self.distribute(child.clone(), flex)?);
        }
        plan.replace_children(
            new_children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }
}

/// One part of a plan, run as a job on the cluster; its rows stream back.
#[derive(Debug)]
pub struct ClusterExec {
    plan: Arc<dyn ExecutionPlan>,
    scheduler_url: String,
    properties: Arc<PlanProperties>,
}

impl ClusterExec {
    /// `plan`, to run as one job on `cluster`.
    pub(crate) fn new(plan: Arc<dyn ExecutionPlan>, cluster: &Cluster) -> Self {
        let properties = Arc::new(PlanProperties::new(
            plan.equivalence_properties().clone(),
            Partitioning::UnknownPartitioning(1),
            plan.pipeline_behavior(),
            plan.boundedness(),
        ));
        Self {
            plan,
            scheduler_url: cluster.scheduler_url.clone(),
            properties,
        }
    }
}

impl DisplayAs for ClusterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = datafusion::physical_plan::displayable(self.plan.as_ref()).indent(true);
        write!(
            f,
            "ClusterExec: scheduler={} [\n{inner}]",
            self.scheduler_url
        )
    }
}

impl ExecutionPlan for ClusterExec {
    fn name(&self) -> &str {
        "ClusterExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        // The part inside runs on the cluster: local rules must not touch it.
        vec![]
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
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "ClusterExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "ClusterExec has one partition, not {partition}"
            )));
        }
        let schema: SchemaRef = self.plan.schema();
        let plan = self.plan.clone();
        let url = self.scheduler_url.clone();
        let session_config = context.session_config().clone();
        let session_id = context.session_id();
        let stream = futures::stream::once(async move {
            let config = session_config.ballista_config();
            let codec = StrataCodec::default();
            ballista_core::execution_plans::execute_physical_plan::<PhysicalPlanNode>(
                url.clone(),
                &config,
                plan,
                &codec,
                session_id,
                session_config,
            )
            .await
            .map_err(|e| {
                DataFusionError::Execution(format!(
                    "the Ballista cluster at {url} failed the job: {e}"
                ))
            })
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Checks, before a run, that the cluster answers and that its executors read
/// the lake: writes a small Parquet file under `<lake>/_strata/`, has the
/// cluster read it back, and removes it.
pub async fn probe(engine: &crate::Engine) -> crate::Result<()> {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::datasource::listing::PartitionedFile;
    use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
    use datafusion::datasource::table_schema::TableSchema;
    use datafusion::execution::object_store::ObjectStoreUrl;
    use object_store::ObjectStoreExt;
    use object_store::path::Path as StorePath;

    use crate::error::Error;

    let Some(cluster) = engine.cluster.clone() else {
        return Ok(());
    };
    let lake = engine.lake();
    let root = lake.root();
    let url = if root.contains("://") {
        url::Url::parse(root).map_err(|e| Error::User(format!("bad lake URL: {e}")))?
    } else {
        url::Url::from_directory_path(root)
            .map_err(|_| Error::User(format!("the lake {root} is not an absolute folder")))?
    };
    let store: Arc<dyn object_store::ObjectStore> = if url.scheme() == "file" {
        Arc::new(object_store::local::LocalFileSystem::new())
    } else {
        crate::storage::store_for(&url, lake.options())?.0
    };
    let store_url = table::store_root(&url);
    let schema = Arc::new(Schema::new(vec![Field::new(
        "probe",
        DataType::Int64,
        false,
    )]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
    )
    .map_err(|e| Error::Internal(e.to_string()))?;
    let mut bytes = Vec::new();
    {
        let mut w =
            datafusion::parquet::arrow::ArrowWriter::try_new(&mut bytes, schema.clone(), None)
                .map_err(|e| Error::Internal(e.to_string()))?;
        w.write(&batch)
            .map_err(|e| Error::Internal(e.to_string()))?;
        w.close().map_err(|e| Error::Internal(e.to_string()))?;
    }
    let base = StorePath::from_url_path(url.path()).map_err(|e| {
        Error::User(format!(
            "bad lake path {}: {e}",
            crate::storage::redact(root)
        ))
    })?;
    let path = base
        .clone()
        .join("_strata")
        .join(format!("probe-{}.parquet", uuid::Uuid::new_v4()).as_str());
    let size = bytes.len() as u64;
    store.put(&path, bytes.into()).await.map_err(|e| {
        Error::User(format!(
            "cannot write to the lake at {}: {e}",
            crate::storage::redact(root)
        ))
    })?;

    let read = async {
        let store_url = ObjectStoreUrl::parse(&store_url)?;
        let source = datafusion::datasource::physical_plan::ParquetSource::new(
            TableSchema::builder(schema.clone()).build(),
        );
        let config = FileScanConfigBuilder::new(store_url, Arc::new(source))
            .with_file_groups(vec![FileGroup::new(vec![PartitionedFile::new(
                path.to_string(),
                size,
            )])])
            .build();
        let ctx = engine.context();
        let scan: Arc<dyn ExecutionPlan> =
            datafusion::datasource::source::DataSourceExec::from_data_source(config);
        let job: Arc<dyn ExecutionPlan> = Arc::new(ClusterExec::new(scan, &cluster));
        datafusion::physical_plan::collect(job, ctx.task_ctx()).await
    };
    let result = read.await;
    let _ = store.delete(&path).await;
    let rows: usize = match result {
        Ok(batches) => batches.iter().map(|b| b.num_rows()).sum(),
        Err(e) => {
            let e = e.to_string();
            let help = if e.contains("transport error")
                || e.contains("Connection refused")
                || e.contains("connect")
            {
                format!(
                    "is a scheduler running there (`strata scheduler`) with executors (`strata executor`)? ({e})"
                )
            } else {
                format!(
                    "its executors cannot read the lake at {} ({e}); with a Ballista engine the lake must be on storage every executor reaches: an s3://, az:// or gs:// URL (credentials in the executors' environment or `--storage-option`), or a folder mounted at the same path on every executor",
                    crate::storage::redact(root)
                )
            };
            return Err(Error::User(format!("engine {}: {help}", cluster.engine())));
        }
    };
    if rows != 3 {
        return Err(Error::User(format!(
            "engine {}: the cluster read {rows} rows of the lake probe instead of 3",
            cluster.engine()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
