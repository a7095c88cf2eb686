//! The one place that builds DataFusion sessions and registers lake tables in
//! them, so that a Ballista session can later replace it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemorySchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::delta_datafusion::planner::DeltaPlanner;
use strata_graph::{Graph, NodeKind};
use strata_project::{Layer, Materialization, Project};
use strata_state::StateStore;

use crate::error::{Context, Error, Result};
use crate::lake::Lake;

/// Everything a task needs: the project, its DAG, the lake and the state store.
#[derive(Clone)]
pub struct Engine {
    pub(crate) project: Arc<Project>,
    pub(crate) graph: Arc<Graph>,
    pub(crate) state: StateStore,
    pub(crate) lake: Lake,
    pub(crate) runtime: Arc<RuntimeEnv>,
    /// One lock per table, held while a task commits to it, so tasks of one
    /// run that write the same table (a backfill's intervals) take turns.
    write_locks: Arc<std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Schemas of tables deployed by this process (see `deploy.rs`).
    pub(crate) deployed: Arc<std::sync::Mutex<BTreeMap<String, SchemaRef>>>,
    /// Tables read from another target's lake instead of this one (defer).
    deferred: Arc<BTreeMap<String, Lake>>,
    /// The Ballista cluster queries run on (`engine = "ballista://…"`).
    #[cfg(feature = "ballista")]
    pub(crate) cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl Engine {
    /// An engine over a validated project and its graph.
    pub fn new(project: Arc<Project>, graph: Arc<Graph>, state: StateStore) -> Self {
        let lake = Lake::of(&project);
        #[cfg(feature = "ballista")]
        let cluster = project.engine.starts_with("ballista://").then(|| {
            Arc::new(crate::cluster::Cluster::new(
                &project.engine,
                project.fallback_local,
            ))
        });
        Self {
            project,
            graph,
            state,
            lake,
            runtime: Arc::new(RuntimeEnv::default()),
            write_locks: Default::default(),
            deployed: Default::default(),
            deferred: Default::default(),
            #[cfg(feature = "ballista")]
            cluster,
        }
    }

    /// Whether queries run on a Ballista cluster.
    pub fn on_cluster(&self) -> bool {
        #[cfg(feature = "ballista")]
        return self.cluster.is_some();
        #[cfg(not(feature = "ballista"))]
        return false;
    }

    /// Makes the store at `root` (`table`'s) readable by this engine's
    /// sessions, for plans that list or read its files here.
    #[cfg(feature = "ballista")]
    pub(crate) fn register_store(
        &self,
        root: &datafusion::execution::object_store::ObjectStoreUrl,
        table: &deltalake::DeltaTable,
    ) {
        if self.runtime.object_store(root).is_err() {
            let store = table.log_store().root_object_store(None);
            self.runtime.register_object_store(root.as_ref(), store);
        }
    }

    /// A reader of `table`'s loaded version (of only the files among `only`,
    /// full URIs, when given): delta-rs's provider locally, a
    /// [`crate::cluster::table::LakeTable`] on a cluster.
    pub(crate) async fn provider(
        &self,
        name: &str,
        table: &deltalake::DeltaTable,
        only: Option<Vec<String>>,
    ) -> Result<Arc<dyn TableProvider>> {
        #[cfg(feature = "ballista")]
        if self.cluster.is_some() {
            let t = crate::cluster::table::LakeTable::try_new(name, table, only.as_deref())?;
            // Parts of a plan that stay here (fallback) read the files too.
            self.register_store(t.store_url(), table);
            return Ok(Arc::new(t));
        }
        let provider = match only {
            None => table.table_provider().await,
            Some(files) => {
                table
                    .table_provider()
                    .with_file_selection(
                        deltalake::delta_datafusion::FileSelection::from_file_paths(files),
                    )
                    .await
            }
        };
        provider.context(|| format!("reading {name}"))
    }

    /// A copy of this engine for one task: its sessions reserve memory
    /// through a pool of the task's own (on the shared one), which tells the
    /// most the task's operators held at once.
    pub(crate) fn for_task(&self) -> (Self, Arc<crate::memory::TaskMemory>) {
        let memory = Arc::new(crate::memory::TaskMemory::new(
            self.runtime.memory_pool.clone(),
        ));
        let runtime = RuntimeEnvBuilder::from_runtime_env(&self.runtime)
            .with_memory_pool(memory.clone())
            .build_arc();
        match runtime {
            Ok(runtime) => (
                Self {
                    runtime,
                    ..self.clone()
                },
                memory,
            ),
            // Only a disk manager that cannot be built fails, and the shared
            // one is reused: keep the shared runtime, without the measure.
            Err(_) => (self.clone(), memory),
        }
    }

    /// Reads each of `tables` from `lake` (another target's) instead of this
    /// engine's own lake. Nothing is ever written there: writes always go to
    /// [`Engine::lake`], and a run must not build a deferred table.
    pub fn with_deferred(mut self, lake: &Lake, tables: impl IntoIterator<Item = String>) -> Self {
        self.deferred = Arc::new(tables.into_iter().map(|t| (t, lake.clone())).collect());
        self
    }

    /// The tables read from another target's lake.
    pub fn deferred(&self) -> impl Iterator<Item = &String> {
        self.deferred.keys()
    }

    /// The lake `table` is read from: another target's when deferred.
    pub fn reader_lake(&self, table: &str) -> &Lake {
        self.deferred.get(table).unwrap_or(&self.lake)
    }

    /// Waits for, and holds until dropped, the right to commit to `table`.
    pub(crate) async fn write_lock(&self, table: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.write_locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(table.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// The project.
    pub fn project(&self) -> &Project {
        &self.project
    }

    /// The project, shared.
    pub fn shared_project(&self) -> Arc<Project> {
        self.project.clone()
    }

    /// The DAG, shared.
    pub fn shared_graph(&self) -> Arc<Graph> {
        self.graph.clone()
    }

    /// The project's DAG.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The state store.
    pub fn state(&self) -> &StateStore {
        &self.state
    }

    /// The lake.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// A fresh session with the `bronze`, `silver` and `gold` schemas and no tables.
    pub fn context(&self) -> SessionContext {
        #[cfg(feature = "ballista")]
        if let Some(cluster) = &self.cluster {
            return cluster_session_context(
                self.project.max_parallel,
                self.runtime.clone(),
                cluster,
            );
        }
        session_context(self.project.max_parallel, self.runtime.clone())
    }

    /// A fresh session that runs in this process whatever the engine: for
    /// rows already here (a batch being ingested), which a cluster would only
    /// have to be sent.
    pub fn local_context(&self) -> SessionContext {
        session_context(self.project.max_parallel, self.runtime.clone())
    }

    /// A fresh session of the same kind (cluster or local) as `df`'s.
    pub(crate) fn context_for(&self, df: &datafusion::prelude::DataFrame) -> SessionContext {
        if is_cluster_session(&df.clone().into_parts().0) {
            self.context()
        } else {
            self.local_context()
        }
    }

    /// Registers the current version of each named table (and, for views, the
    /// tables they read) in `ctx`; returns the Delta version of every table registered.
    pub async fn register_current(
        &self,
        ctx: &SessionContext,
        names: &[String],
    ) -> Result<BTreeMap<String, i64>> {
        let mut needed: BTreeSet<String> = BTreeSet::new();
        let mut stack: Vec<String> = names.to_vec();
        while let Some(n) = stack.pop() {
            if !needed.insert(n.clone()) {
                continue;
            }
            if self.is_view(&n)
                && let Some(node) = self.graph.node(&n)
            {
                stack.extend(node.tables.iter().cloned());
            }
        }
        let mut versions = BTreeMap::new();
        // Quarantine tables are not graph nodes; register them first.
        for n in needed.iter().filter(|n| self.graph.node(n).is_none()) {
            self.register_table(ctx, n, &mut versions).await?;
        }
        for n in self.graph.order() {
            if needed.contains(n) {
                self.register_table(ctx, n, &mut versions).await?;
            }
        }
        Ok(versions)
    }

    async fn register_table(
        &self,
        ctx: &SessionContext,
        name: &str,
        versions: &mut BTreeMap<String, i64>,
    ) -> Result<()> {
        if ctx.table_exist(name).unwrap_or(false) {
            return Ok(()); // registered already (e.g. as the base table of a view)
        }
        if self.is_view(name) {
            let model = &self.project.models[name];
            let df = ctx
                .sql(&model.sql)
                .await
                .context(|| format!("planning view {name}"))?;
            ctx.register_table(name, df.into_view())
                .context(|| format!("registering {name}"))?;
            return Ok(());
        }
        match self.reader_lake(name).open_existing(name).await? {
            Some(table) => {
                count_bytes_read(table_bytes(&table, None));
                versions.insert(
                    name.to_string(),
                    self.register_delta(ctx, name, &table).await?,
                );
            }
            None if self
                .project
                .sources
                .values()
                .any(|s| s.quarantine_table() == name) =>
            {
                let empty = MemTable::try_new(crate::ingest::quarantine_schema(), vec![vec![]])
                    .context(|| format!("registering {name}"))?;
                ctx.register_table(name, Arc::new(empty))
                    .context(|| format!("registering {name}"))?;
            }
            None => {
                if self.graph.node(name).is_none() && name.ends_with("_quarantine") {
                    return Err(Error::User(format!(
                        "{name} does not exist yet: nothing has been quarantined"
                    )));
                }
                let hint = match self.graph.node(name).map(|n| &n.kind) {
                    Some(NodeKind::Source(_)) => {
                        format!("run `strata run --select {name}` to ingest it")
                    }
                    _ => format!("run `strata run --select +{name}` to build it"),
                };
                return Err(Error::User(format!(
                    "table {name} has not been built yet; {hint}"
                )));
            }
        }
        Ok(())
    }

    fn is_view(&self, name: &str) -> bool {
        self.project
            .models
            .get(name)
            .is_some_and(|m| m.config.materialized == Materialization::View)
    }

    /// A session with every table of the lake that exists, for ad-hoc queries.
    /// Views are added when everything they read exists.
    pub async fn query_context(&self) -> Result<SessionContext> {
        let ctx = self.context();
        // Every table that exists, each opened once.
        let model_quarantines = self
            .project
            .models
            .keys()
            .map(|m| format!("{m}_quarantine"));
        let names: Vec<String> = self
            .graph
            .order()
            .iter()
            .filter(|n| !self.is_view(n))
            .cloned()
            .chain(model_quarantines)
            .collect();
        for n in &names {
            if let Some(table) = self.reader_lake(n).open_existing(n).await? {
                self.register_delta(&ctx, n, &table).await?;
            }
        }
        // Source quarantine tables are registered empty when nothing was quarantined yet.
        let source_quarantines: Vec<String> = self
            .project
            .sources
            .values()
            .map(|s| s.quarantine_table())
            .collect();
        self.register_current(&ctx, &source_quarantines).await?;
        for n in self.graph.order().iter().filter(|n| self.is_view(n)) {
            if let Err(e) = self.register_table(&ctx, n, &mut BTreeMap::new()).await {
                tracing::debug!(view = %n, error = %e, "view not queryable yet");
            }
        }
        Ok(ctx)
    }

    /// Runs a query against the current lake and collects the result.
    pub async fn sql(&self, query: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let ctx = self.query_context().await?;
        let df = ctx
            .sql(query)
            .await
            .context(|| "planning the query".into())?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await.context(|| "running the query".into())?;
        Ok((schema, batches))
    }
}

impl Engine {
    /// Registers a Delta table's current snapshot under `name`; returns its version.
    async fn register_delta(
        &self,
        ctx: &SessionContext,
        name: &str,
        table: &deltalake::DeltaTable,
    ) -> Result<i64> {
        let provider = self.provider(name, table, None).await?;
        ctx.register_table(name, provider)
            .context(|| format!("registering {name}"))?;
        Ok(crate::lake::version_of(table).unwrap_or(0))
    }
}

/// Marks a session whose queries run on a cluster.
#[derive(Debug)]
struct OnCluster;

pub(crate) fn is_cluster_session(state: &datafusion::execution::SessionState) -> bool {
    state.config().get_extension::<OnCluster>().is_some()
}

/// Computes `df` once and keeps its rows in memory for reuse, locally; in a
/// cluster session it is left as it is (recomputed), since rows held here
/// would travel inside every plan that reads them.
pub(crate) async fn cache(
    ctx: &SessionContext,
    df: datafusion::prelude::DataFrame,
) -> datafusion::error::Result<datafusion::prelude::DataFrame> {
    if is_cluster_session(&ctx.state()) {
        Ok(df)
    } else {
        df.cache().await
    }
}

/// The first column of the first row of a query, as an integer (0 when empty or null).
pub(crate) async fn scalar_i64(ctx: &SessionContext, sql: &str) -> Result<i64> {
    Ok(scalar_opt(ctx, sql).await?.unwrap_or(0))
}

/// The first `n` columns of the first row of a query, cast to integers
/// (`None` for each when the result is empty or the value null).
async fn first_row_ints(ctx: &SessionContext, sql: &str, n: usize) -> Result<Vec<Option<i64>>> {
    use datafusion::arrow::array::Array;
    let batches = ctx
        .sql(sql)
        .await
        .context(|| format!("planning `{sql}`"))?
        .collect()
        .await
        .context(|| format!("running `{sql}`"))?;
    let Some(b) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(vec![None; n]);
    };
    (0..n)
        .map(|i| {
            let col = datafusion::arrow::compute::cast(
                b.column(i),
                &datafusion::arrow::datatypes::DataType::Int64,
            )
            .context(|| "reading a query's value".into())?;
            let ints = col
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>();
            Ok(ints.and_then(|a| if a.is_null(0) { None } else { Some(a.value(0)) }))
        })
        .collect()
}

/// The first two columns of the first row of a query, cast to integers.
pub(crate) async fn scalar_pair(
    ctx: &SessionContext,
    sql: &str,
) -> Result<(Option<i64>, Option<i64>)> {
    let v = first_row_ints(ctx, sql, 2).await?;
    Ok((v[0], v[1]))
}

/// The first column of the first row of a query, cast to an integer (`None` when empty or null).
pub(crate) async fn scalar_opt(ctx: &SessionContext, sql: &str) -> Result<Option<i64>> {
    Ok(first_row_ints(ctx, sql, 1).await?[0])
}

/// The one place DataFusion sessions are made: `bronze`, `silver` and `gold`
/// schemas, Delta's planner, and the settings every Strata query runs with.
pub(crate) fn session_context(
    target_partitions: usize,
    runtime: Arc<RuntimeEnv>,
) -> SessionContext {
    build_session(
        SessionConfig::new(),
        target_partitions,
        runtime,
        DeltaPlanner::new(),
    )
}

/// A session whose queries run on `cluster`: Ballista's restricted settings,
/// and a planner that sends each serializable part of a plan to the cluster.
#[cfg(feature = "ballista")]
fn cluster_session_context(
    target_partitions: usize,
    runtime: Arc<RuntimeEnv>,
    cluster: &Arc<crate::cluster::Cluster>,
) -> SessionContext {
    let planner = cluster.planner(DeltaPlanner::new());
    build_session(
        crate::cluster::Cluster::session_config().with_extension(Arc::new(OnCluster)),
        target_partitions,
        runtime,
        planner,
    )
}

fn build_session(
    config: SessionConfig,
    target_partitions: usize,
    runtime: Arc<RuntimeEnv>,
    planner: Arc<dyn datafusion::execution::context::QueryPlanner + Send + Sync>,
) -> SessionContext {
    let mut config = config
        .with_information_schema(true)
        .with_target_partitions(target_partitions.max(1))
        // As delta-rs's own sessions: hash-join IN-list pushdown can panic on
        // dictionary-encoded (partition) join keys.
        .set_usize("datafusion.optimizer.hash_join_inlist_pushdown_max_size", 0)
        .set_usize(
            "datafusion.optimizer.hash_join_inlist_pushdown_max_distinct_values",
            0,
        );
    // Keep SQL positions so planning errors can name line and column.
    config.options_mut().sql_parser.collect_spans = true;
    let mut rules = physical_rules();
    if config.get_extension::<OnCluster>().is_none() {
        // Last, and here only: its shared node cannot travel to a cluster.
        rules.push(Arc::new(crate::shared_build::ShareBuildSides));
    }
    // Delta's planner turns its write and merge nodes into execution plans.
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_query_planner(planner)
        .with_physical_optimizer_rules(rules)
        .build();
    let ctx = SessionContext::new_with_state(state);
    if let Some(catalog) = ctx.catalog("datafusion") {
        for layer in Layer::ALL {
            let _ = catalog.register_schema(layer.as_str(), Arc::new(MemorySchemaProvider::new()));
        }
    }
    ctx
}

/// DataFusion's physical optimizer rules, with Strata's
/// [`JoinEstimate`](crate::join_estimate::JoinEstimate) right after
/// `JoinSelection` (it decides build sides as that rule does, before the
/// repartitions and sorts are placed) and
/// [`HavingJoin`](crate::having_join::HavingJoin) right after
/// `EnsureRequirements` (it relies on the sorts and repartitions that rule
/// places, and keeps them valid).
pub(crate) fn physical_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let mut rules = PhysicalOptimizer::new().rules;
    let at = rules
        .iter()
        .position(|r| r.name() == "EnsureRequirements")
        .map_or(rules.len(), |i| i + 1);
    rules.insert(at, Arc::new(crate::having_join::HavingJoin));
    let at = rules
        .iter()
        .position(|r| r.name() == "join_selection")
        .map_or(0, |i| i + 1);
    rules.insert(at, Arc::new(crate::join_estimate::JoinEstimate));
    rules
}

tokio::task_local! {
    /// Bytes of the data files the current task registered for reading.
    static BYTES_READ: Arc<std::sync::atomic::AtomicI64>;
}

/// Runs `f` counting the bytes of the data files it registers for reading
/// (whole tables, or an incremental model's new files): an upper bound of
/// what its queries read, since column and row-group pruning read less.
pub async fn counting_bytes_read<F: std::future::Future>(f: F) -> (F::Output, i64) {
    let counter = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let out = BYTES_READ.scope(counter.clone(), f).await;
    (out, counter.load(std::sync::atomic::Ordering::Relaxed))
}

/// Adds to the current task's count, if it is counting.
pub(crate) fn count_bytes_read(n: i64) {
    let _ = BYTES_READ.try_with(|c| c.fetch_add(n, std::sync::atomic::Ordering::Relaxed));
}

/// Bytes of a table's data files (of only those among `only`, full URIs, when given).
pub(crate) fn table_bytes(table: &deltalake::DeltaTable, only: Option<&[String]>) -> i64 {
    let Ok(snapshot) = table.snapshot() else {
        return 0;
    };
    snapshot
        .log_data()
        .iter()
        .filter(|f| {
            only.is_none_or(|uris| {
                let p = f.path();
                uris.iter().any(|u| u.ends_with(p.as_ref()))
            })
        })
        .map(|f| f.size())
        .sum()
}
