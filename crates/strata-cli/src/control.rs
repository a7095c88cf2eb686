//! What a run is made of (shared by `strata run`, `strata backfill` and the
//! API), and the [`strata_server::Control`] that lets `strata serve`'s API
//! start runs in the background.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use strata_graph::Graph;
use strata_project::Project;
use strata_runtime::{BackfillPlan, RunOptions, TaskSpec};
use strata_server::{ControlError, StartRun};
use strata_state::StateStore;

/// A run ready to execute.
pub(crate) struct Prepared {
    /// Its tasks, in dependency order.
    pub tasks: Vec<TaskSpec>,
    /// Its options (selection, trigger, interval, …).
    pub options: RunOptions,
    /// For a resume: the run resumed and how many of its tasks were done.
    pub resumed: Option<(String, usize)>,
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, ControlError> {
    strata_project::parse_time(s).ok_or_else(|| {
        ControlError::Invalid(format!(
            "`{s}` is not a date (YYYY-MM-DD) or an RFC 3339 time"
        ))
    })
}

/// The tasks and options of a run of `select`, or of the resumption of a run
/// (`resume`: an id, or empty for the latest run).
pub(crate) async fn prepare_run(
    project: &Project,
    graph: &Graph,
    state: &StateStore,
    select: String,
    full_refresh: bool,
    interval: Option<(DateTime<Utc>, DateTime<Utc>)>,
    resume: Option<String>,
) -> Result<Prepared, ControlError> {
    let invalid = |e: &dyn std::fmt::Display| ControlError::Invalid(e.to_string());
    let (select, full_refresh, interval, resumed_from, done) = match resume {
        None => (select, full_refresh, interval, None, BTreeSet::new()),
        Some(id) => {
            let run = if id.is_empty() {
                // The latest run, unless it succeeded.
                state
                    .runs(1)
                    .await
                    .map_err(|e| ControlError::Failed(e.to_string()))?
                    .into_iter()
                    .next()
                    .ok_or_else(|| ControlError::Invalid("no run to resume yet".into()))?
            } else {
                state
                    .run(&id)
                    .await
                    .map_err(|e| ControlError::Failed(e.to_string()))?
                    .ok_or_else(|| {
                        ControlError::NotFound(format!("no run `{id}`; `strata runs` lists them"))
                    })?
            };
            if run.status == "success" {
                return Err(ControlError::Invalid(format!(
                    "run {} succeeded: nothing to resume",
                    run.run_id
                )));
            }
            if run.trigger == "backfill" {
                return Err(ControlError::Invalid(format!(
                    "run {} was a backfill: run the same `strata backfill` again; it runs only the intervals still missing or failed",
                    run.run_id
                )));
            }
            let done: BTreeSet<String> = state
                .tasks(&run.run_id)
                .await
                .map_err(|e| ControlError::Failed(e.to_string()))?
                .into_iter()
                .filter(|t| t.status == "success" || t.status == "skipped")
                .map(|t| t.task)
                .collect();
            let interval = match &run.interval {
                Some((a, b)) => Some((parse_time(a)?, parse_time(b)?)),
                None => None,
            };
            (
                run.selection,
                run.full_refresh,
                interval,
                Some(run.run_id),
                done,
            )
        }
    };
    let selected = graph.select(&select).map_err(|e| invalid(&e))?;
    let tasks: Vec<_> = strata_runtime::plan(project, graph, &selected, interval, Utc::now())
        .into_iter()
        .filter(|t| !done.contains(&t.name))
        .collect();
    Ok(Prepared {
        tasks,
        resumed: resumed_from.clone().map(|r| (r, done.len())),
        options: RunOptions {
            selection: select,
            full_refresh,
            trigger: resumed_from.as_ref().map(|_| "resume".to_string()),
            resumed_from,
            interval,
            run_id: None,
        },
    })
}

/// The plan of a backfill of `select` over `[start, end)`.
pub(crate) async fn prepare_backfill(
    project: &Project,
    graph: &Graph,
    state: &StateStore,
    select: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<BackfillPlan, ControlError> {
    if start >= end {
        return Err(ControlError::Invalid("start must be before end".into()));
    }
    let selected = graph
        .select(select)
        .map_err(|e| ControlError::Invalid(e.to_string()))?;
    if !selected.iter().any(|n| {
        project
            .models
            .get(n)
            .is_some_and(|m| m.config.partitioning.is_some())
    }) {
        return Err(ControlError::Invalid(format!(
            "no partitioned model in the selection `{select}`: backfill runs the intervals of replace_range models (use `strata run --start --end` for the others)"
        )));
    }
    strata_runtime::backfill_plan(project, graph, &selected, start, end, state)
        .await
        .map_err(|e| ControlError::Invalid(e.to_string()))
}

/// How many intervals of partitioned models a backfill plan would run.
pub(crate) fn intervals_to_run(plan: &BackfillPlan) -> usize {
    plan.models
        .iter()
        .filter(|m| m.grain.is_some())
        .map(|m| m.to_run.len())
        .sum()
}

/// Starts runs for `strata serve`'s API. The runs belong to `runs`, which
/// the serve loop owns: when serve stops, they stop (and are found
/// interrupted, resumable, at the next start).
pub(crate) struct CliControl {
    pub project: Arc<Project>,
    pub graph: Arc<Graph>,
    pub state: StateStore,
    pub runs: Arc<Mutex<tokio::task::JoinSet<()>>>,
    /// The runtime runs execute on (the scheduler's, not the query threads').
    pub runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl strata_server::Control for CliControl {
    async fn start(&self, req: StartRun) -> Result<String, ControlError> {
        let (tasks, mut options, parallel) = match req {
            StartRun::Run {
                select,
                full_refresh,
                start,
                end,
            } => {
                let interval = match (start, end) {
                    (Some(s), Some(e)) => {
                        let (s, e) = (parse_time(&s)?, parse_time(&e)?);
                        if s >= e {
                            return Err(ControlError::Invalid("start must be before end".into()));
                        }
                        Some((s, e))
                    }
                    (None, None) => None,
                    _ => {
                        return Err(ControlError::Invalid(
                            "give both start and end, or neither".into(),
                        ));
                    }
                };
                let p = prepare_run(
                    &self.project,
                    &self.graph,
                    &self.state,
                    select,
                    full_refresh,
                    interval,
                    None,
                )
                .await?;
                (p.tasks, p.options, self.project.max_parallel)
            }
            StartRun::Resume { run_id } => {
                let p = prepare_run(
                    &self.project,
                    &self.graph,
                    &self.state,
                    String::new(),
                    false,
                    None,
                    Some(run_id),
                )
                .await?;
                (p.tasks, p.options, self.project.max_parallel)
            }
            StartRun::Backfill {
                select,
                start,
                end,
                parallel,
            } => {
                let (s, e) = (parse_time(&start)?, parse_time(&end)?);
                let plan = prepare_backfill(&self.project, &self.graph, &self.state, &select, s, e)
                    .await?;
                if intervals_to_run(&plan) == 0 {
                    return Err(ControlError::Invalid(
                        "nothing to backfill: every interval in the range is done".into(),
                    ));
                }
                let options = RunOptions {
                    selection: select,
                    trigger: Some("backfill".into()),
                    interval: Some((s, e)),
                    ..Default::default()
                };
                let parallel = parallel.unwrap_or(self.project.max_parallel).max(1);
                (plan.tasks, options, parallel)
            }
        };
        if options.trigger.is_none() {
            options.trigger = Some("api".into());
        }
        let run_id = strata_runtime::new_run_id(Utc::now());
        options.run_id = Some(run_id.clone());
        let (tx, mut rx) = tokio::sync::oneshot::channel::<String>();
        let (project, graph, state) =
            (self.project.clone(), self.graph.clone(), self.state.clone());
        {
            let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
            while runs.try_join_next().is_some() {}
            runs.spawn_on(
                async move {
                    match crate::schedule::execute(
                        &project,
                        &graph,
                        &state,
                        tasks,
                        options,
                        parallel,
                        false,
                        vec![],
                    )
                    .await
                    {
                        Ok(summary) => {
                            eprintln!("api run {}: {}", summary.run_id, summary.status);
                            if let Err(e) = crate::monitor::evaluate_and_notify(
                                &project,
                                &graph,
                                &state,
                                Utc::now(),
                            )
                            .await
                            {
                                eprintln!("warning: alerts were not evaluated: {e}");
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(e.to_string());
                        }
                    }
                },
                &self.runtime,
            );
        }
        // Answer once the run is recorded (so GET /api/runs/{id} finds it), or
        // with the reason it could not start.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(why) = rx.try_recv() {
                return Err(ControlError::Failed(format!(
                    "the run did not start: {why}"
                )));
            }
            match self.state.run(&run_id).await {
                Ok(Some(_)) => return Ok(run_id),
                Ok(None) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                }
                Ok(None) => return Ok(run_id),
                Err(e) => return Err(ControlError::Failed(e.to_string())),
            }
        }
    }
}
