//! [`strata_runtime::TaskExecutor`] over the engine: ingest tasks for
//! sources, materializations for models, and a record of each model build.

use strata_graph::NodeKind;
use strata_runtime::{RunInfo, TaskError, TaskExecutor, TaskOutput, TaskSpec};
use strata_state::ModelState;

use crate::engine::Engine;
use crate::error::{Context, Error};
use crate::{ingest, materialize};

/// Runs tasks with DataFusion and Delta Lake.
pub struct EngineExecutor {
    engine: Engine,
    lineage: Option<crate::openlineage::Emitter>,
    /// Work after commits done beside the run's next tasks (checkpoints,
    /// compactions), awaited by [`TaskExecutor::finish`] before the run ends.
    after_commits: std::sync::Mutex<tokio::task::JoinSet<()>>,
}

impl EngineExecutor {
    /// An executor over `engine` (sending OpenLineage events when the
    /// project configures an endpoint).
    pub fn new(engine: Engine) -> Self {
        let lineage = engine
            .project
            .openlineage
            .as_ref()
            .and_then(|cfg| crate::openlineage::Emitter::new(cfg, engine.lake.root()));
        Self {
            engine,
            lineage,
            after_commits: Default::default(),
        }
    }
}

#[async_trait::async_trait]
impl TaskExecutor for EngineExecutor {
    /// A model never built is guessed to need as much memory as its inputs'
    /// data files hold (a whole-table dedup or join holds about that); an
    /// ingest, whose reading is not in the query pool, nothing; and on a
    /// cluster nothing, since the queries' memory is the executors'.
    async fn expected_memory(&self, task: &TaskSpec) -> Option<i64> {
        let e = &self.engine;
        let node = e.graph.node(&task.table)?;
        if e.on_cluster() || !matches!(node.kind, NodeKind::Model) {
            return None;
        }
        let mut bytes = 0;
        for input in &node.upstream {
            if let Ok(Some(table)) = e.reader_lake(input).open_existing(input).await {
                bytes += crate::engine::table_bytes(&table, None);
            }
        }
        Some(bytes)
    }

    async fn finish(&self) {
        let mut pending = std::mem::take(
            &mut *self
                .after_commits
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        while pending.join_next().await.is_some() {}
    }

    async fn execute(&self, task: &TaskSpec, run: &RunInfo) -> Result<TaskOutput, TaskError> {
        let e = &self.engine;
        let ol_run = uuid::Uuid::new_v4();
        let inputs: Vec<String> = e
            .graph
            .node(&task.table)
            .map(|n| n.tables.clone())
            .unwrap_or_default();
        let model = e.project.models.get(&task.table);
        let interval = task.interval.or(run.interval).map(|(a, b)| {
            let f = |t: chrono::DateTime<chrono::Utc>| {
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            };
            (f(a), f(b))
        });
        let event = |kind| crate::openlineage::TaskEvent {
            kind,
            run_id: ol_run,
            strata_run: &run.run_id,
            table: &task.table,
            job_type: if model.is_some() {
                &task.kind
            } else {
                "ingest"
            },
            sql: model.map(|m| m.sql.as_str()),
            inputs: &inputs,
            columns: None,
            lineage: None,
            stats: None,
            interval: interval.clone(),
            error: None,
        };
        if let Some(ol) = &self.lineage {
            ol.send(&event("START")).await;
        }
        let out = match self.build(task, run).await {
            Ok(out) => out,
            Err(err) => {
                if let Some(ol) = &self.lineage {
                    let mut ev = event("FAIL");
                    ev.error = Some(&err.message);
                    ol.send(&ev).await;
                }
                return Err(err);
            }
        };
        if !out.skipped
            && let Some(v) = out.delta_version
        {
            let checkpoint = v > 0 && v % CHECKPOINT_EVERY == 0;
            let compact_at = e.project.auto_compact;
            if checkpoint || compact_at > 0 {
                // In the task's span, so its log lines go to the run's log.
                let work = tracing::Instrument::instrument(
                    after_commit(e.clone(), task.table.clone(), checkpoint, compact_at),
                    tracing::Span::current(),
                );
                self.after_commits
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .spawn(work);
            }
        }
        // A skipped task deployed nothing new, unless it was never recorded.
        let recorded = out.skipped
            && self.lineage.is_none()
            && e.state
                .deployment(&task.table)
                .await
                .context(|| "reading deployments".into())?
                .is_some();
        if !recorded {
            let deployed = e.record_deployment(&task.table, &run.run_id).await?;
            if let Some(ol) = &self.lineage {
                let mut ev = event("COMPLETE");
                let columns = deployed.as_ref().map(|(schema, _)| {
                    schema
                        .fields()
                        .iter()
                        .map(|f| (f.name().clone(), f.data_type().to_string()))
                        .collect()
                });
                ev.columns = columns;
                ev.lineage = deployed.as_ref().and_then(|(_, l)| l.as_ref());
                ev.stats = Some((out.rows_written, out.bytes_written));
                ol.send(&ev).await;
            }
        }
        Ok(out)
    }
}

/// Every this many commits a table gets a Delta checkpoint (as Spark's Delta
/// Lake does by default; delta-rs's own default is 100), so that opening it
/// reads one Parquet file and at most this many commits, not its whole log.
const CHECKPOINT_EVERY: i64 = 10;

/// After a task's commit, beside the run's next tasks, with the table
/// opened once: a Delta checkpoint of its version (written whole under its
/// final name, so a reader meanwhile sees it complete or not at all), and a
/// compaction once `compact_at` small files have gathered (`[project]
/// auto_compact`; 0: never). A failure is logged, not raised: the commit
/// it follows is already published, and the table reads the same without.
async fn after_commit(engine: Engine, table: String, checkpoint: bool, compact_at: usize) {
    let table = table.as_str();
    let t = match engine.lake().open(table).await {
        Ok(t) => t,
        Err(err) => {
            tracing::warn!(table, error = %err, "opening a table after its commit failed");
            return;
        }
    };
    if checkpoint && let Err(err) = deltalake::checkpoints::create_checkpoint(&t, None).await {
        tracing::warn!(table, error = %err, "writing a Delta checkpoint failed");
    }
    if compact_at > 0 {
        crate::maintain::auto_compact(&engine, table, &t, compact_at).await;
    }
}

impl EngineExecutor {
    /// Builds `task` with an engine of its own memory pool, and reports the
    /// most that pool held.
    async fn build(&self, task: &TaskSpec, run: &RunInfo) -> Result<TaskOutput, TaskError> {
        let (engine, memory) = self.engine.for_task();
        let mut out = self.build_with(&engine, task, run).await?;
        out.peak_memory = i64::try_from(memory.peak()).unwrap_or(i64::MAX);
        Ok(out)
    }

    async fn build_with(
        &self,
        e: &Engine,
        task: &TaskSpec,
        run: &RunInfo,
    ) -> Result<TaskOutput, TaskError> {
        let node = e
            .graph
            .node(&task.table)
            .ok_or_else(|| Error::Internal(format!("task {} is not in the graph", task.table)))?;
        match &node.kind {
            NodeKind::Source(name) => {
                let source = e.project.sources.get(name).ok_or_else(|| {
                    Error::Internal(format!("source {name} is not in the project"))
                })?;
                let ingest = ingest::ingest(e, source, run);
                #[cfg(feature = "ballista")]
                let (ingested, local) = crate::cluster::recording_local(ingest).await;
                #[cfg(not(feature = "ballista"))]
                let ingested = ingest.await;
                let mut out = ingested?;
                #[cfg(feature = "ballista")]
                note_fallback(&mut out, &local);
                if !out.skipped
                    && let Some(v) = out.delta_version
                {
                    out.bytes_written =
                        e.lake.commit_summary(&source.table(), v).await?.bytes_added;
                }
                Ok(out)
            }
            NodeKind::Model => {
                let model = e.project.models.get(&task.table).ok_or_else(|| {
                    Error::Internal(format!("model {} is not in the project", task.table))
                })?;
                let build = crate::engine::counting_bytes_read(materialize::build(
                    e,
                    model,
                    run,
                    &task.intervals,
                ));
                #[cfg(feature = "ballista")]
                let ((built, bytes_read), local) = crate::cluster::recording_local(build).await;
                #[cfg(not(feature = "ballista"))]
                let (built, bytes_read) = build.await;
                let mut out = built?;
                out.bytes_read = bytes_read;
                #[cfg(feature = "ballista")]
                note_fallback(&mut out, &local);
                if !out.skipped {
                    // The commit just made says what it consumed and wrote,
                    // without loading the table again.
                    let upstream_versions = match out.delta_version {
                        Some(v) => {
                            let c = e.lake.commit_summary(&model.name, v).await?;
                            out.bytes_written = c.bytes_added;
                            out.table_rows = c.table_rows;
                            c.provenance
                                .map(|p| p.upstream_versions)
                                .unwrap_or_default()
                        }
                        None => Default::default(),
                    };
                    if model
                        .config
                        .checks
                        .iter()
                        .any(|c| c.on_fail == Some(strata_project::OnFail::Drop))
                    {
                        out.rows_dropped = e
                            .state
                            .check_results(&run.run_id)
                            .await
                            .context(|| "reading check results".into())?
                            .iter()
                            .filter(|c| {
                                c.model == model.name
                                    && c.action
                                        .as_deref()
                                        .is_some_and(|a| a.starts_with("dropped"))
                            })
                            .map(|c| c.failing_rows)
                            .sum();
                    }
                    e.state
                        .set_model_state(&ModelState {
                            model: model.name.clone(),
                            fingerprint: materialize::fingerprint(model),
                            upstream_versions,
                            delta_version: out.delta_version,
                            built_at: strata_state::now(),
                            run_id: run.run_id.clone(),
                        })
                        .await
                        .context(|| "recording the model build".into())?;
                }
                Ok(out)
            }
        }
    }
}

/// Never silently: a task's note says what ran in Strata's process instead
/// of on the cluster (`fallback = "local"`).
#[cfg(feature = "ballista")]
fn note_fallback(out: &mut TaskOutput, local: &[String]) {
    if local.is_empty() {
        return;
    }
    let note = format!("{} ran here (fallback)", local.join(", "));
    out.message = Some(match out.message.take() {
        Some(m) => format!("{m}; {note}"),
        None => note,
    });
}
