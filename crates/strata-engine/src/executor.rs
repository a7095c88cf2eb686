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
}

impl EngineExecutor {
    /// An executor over `engine`.
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

#[async_trait::async_trait]
impl TaskExecutor for EngineExecutor {
    async fn execute(&self, task: &TaskSpec, run: &RunInfo) -> Result<TaskOutput, TaskError> {
        let e = &self.engine;
        let node = e
            .graph
            .node(&task.table)
            .ok_or_else(|| Error::Internal(format!("task {} is not in the graph", task.table)))?;
        match &node.kind {
            NodeKind::Source(name) => {
                let source = e.project.sources.get(name).ok_or_else(|| {
                    Error::Internal(format!("source {name} is not in the project"))
                })?;
                let mut out = ingest::ingest(e, source, run).await?;
                if !out.skipped
                    && let Some(t) = e.lake.open_existing(&source.table()).await?
                {
                    (out.table_rows, out.bytes_written) =
                        crate::lake::commit_metrics(&t, out.delta_version).await;
                }
                Ok(out)
            }
            NodeKind::Model => {
                let model = e.project.models.get(&task.table).ok_or_else(|| {
                    Error::Internal(format!("model {} is not in the project", task.table))
                })?;
                let mut out = materialize::build(e, model, run, &task.intervals).await?;
                if !out.skipped {
                    let upstream_versions = match e.lake.open_existing(&model.name).await? {
                        Some(t) => {
                            (out.table_rows, out.bytes_written) =
                                crate::lake::commit_metrics(&t, out.delta_version).await;
                            crate::lake::latest_provenance(&t)
                                .await?
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
