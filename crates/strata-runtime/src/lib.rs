//! The orchestrator: runs a plan of tasks (one per table) in dependency order,
//! in parallel up to a limit, skipping the downstream of a failed task, and
//! records every run and task in the state store.
//!
//! It defines the two traits it drives — [`TaskExecutor`] (what a task does;
//! `strata-engine` implements it over DataFusion and Delta Lake) and [`Clock`]
//! (time, so tests never sleep) — and links no query engine.
//!
//! ```no_run
//! # async fn f(store: strata_state::StateStore, exec: std::sync::Arc<dyn strata_runtime::TaskExecutor>) {
//! use strata_runtime::{Runner, RunOptions, TaskSpec};
//! let tasks = vec![TaskSpec::new("silver.a", "table", vec![])];
//! let summary = Runner::new(store, 2).run(exec, tasks, RunOptions::default()).await;
//! # }
//! ```
#![warn(missing_docs)]

/// Generates, for each listed `async fn NAME(state: StateStore)`, a test on
/// SQLite (`sqlite::NAME`) and one on PostgreSQL (`postgres::NAME`).
#[cfg(test)]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let t = strata_state::testing::TestStore::new(strata_state::testing::Backend::Sqlite).await;
                    super::$name(t.store.clone()).await;
                    t.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let t = strata_state::testing::TestStore::new(strata_state::testing::Backend::Postgres).await;
                    super::$name(t.store.clone()).await;
                    t.cleanup().await;
                }
            )*
        }
    };
}

mod cpu;
mod heap;
mod intervals;
mod memory;
pub mod monitor;
mod runner;
mod scheduler;

use std::sync::Arc;

use chrono::{DateTime, Utc};
pub use strata_project::{Grain, Interval};

pub use intervals::{BackfillPlan, IntervalStatus, ModelIntervals, backfill_plan, interval_status};
pub use runner::{Event, Observer, RunOptions, RunSummary, Runner, host_name, new_run_id};
pub use scheduler::{Fired, Launcher, RunRequest, Scheduler};

/// One task of a plan: build one table (or some data intervals of one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    /// The task's name, unique in its run: the table, or for one interval of a
    /// backfill `silver.events[2024-01-01]`.
    pub name: String,
    /// The table the task writes (`silver.orders`).
    pub table: String,
    /// `ingest` or the model's materialization, for display.
    pub kind: String,
    /// Tasks of the same plan that must succeed first.
    pub upstream: Vec<String>,
    /// Attempts after a retryable (outside, timeout or internal) failure.
    pub retries: u32,
    /// Wait before the first retry; doubled for each next one.
    pub retry_delay: std::time::Duration,
    /// Longest one attempt may take.
    pub timeout: Option<std::time::Duration>,
    /// This task's own data interval, overriding the run's.
    pub interval: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// For a partitioned model: the whole intervals of its grain it replaces
    /// (recorded in the state store as done or failed).
    pub intervals: Vec<Interval>,
}

impl TaskSpec {
    /// A task with no retries and no timeout.
    pub fn new(name: impl Into<String>, kind: impl Into<String>, upstream: Vec<String>) -> Self {
        let name = name.into();
        Self {
            table: name.clone(),
            name,
            kind: kind.into(),
            upstream,
            retries: 0,
            retry_delay: std::time::Duration::from_secs(5),
            timeout: None,
            interval: None,
            intervals: vec![],
        }
    }
}

/// What the runner tells an executor about the run a task belongs to.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The run's id.
    pub run_id: String,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// Rebuild incremental and scd2 models from scratch.
    pub full_refresh: bool,
    /// The data interval `[start, end)` that `:start` and `:end` stand for.
    pub interval: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// What a task did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskOutput {
    /// Nothing needed doing (the reason is in `message`).
    pub skipped: bool,
    /// Rows read from inputs (only new rows for incremental work).
    pub rows_read: i64,
    /// Rows written.
    pub rows_written: i64,
    /// Rows sent to quarantine.
    pub rows_quarantined: i64,
    /// The table's Delta version afterwards.
    pub delta_version: Option<i64>,
    /// A note for people.
    pub message: Option<String>,
    /// For a partitioned model: rows per interval written.
    pub intervals: Vec<IntervalRows>,
    /// Rows dropped by `on_fail = "drop"` expectations.
    pub rows_dropped: i64,
    /// Bytes read from inputs, when measured (ingest: the files read).
    pub bytes_read: i64,
    /// Bytes of data files the task's commit added.
    pub bytes_written: i64,
    /// The most memory the task's query operators held at once, in bytes
    /// (0 when not measured).
    pub peak_memory: i64,
    /// Rows in the table afterwards, when known.
    pub table_rows: Option<i64>,
    /// The newest data timestamp in the table afterwards (RFC 3339), when the
    /// table has a time column.
    pub data_time: Option<String>,
}

/// What a partitioned model's task wrote into one interval.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalRows {
    /// The interval.
    pub interval: Interval,
    /// Rows it holds now.
    pub rows: i64,
    /// It had been built before and its rows changed: data arrived late.
    pub late: bool,
}

/// Whose fault a failure is: decides whether it is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad SQL, bad data under `on_bad_rows = "fail"`, bad config: not retried.
    User,
    /// A storage or network failure: may pass on retry.
    External,
    /// A bug in Strata.
    Internal,
}

/// A failed task.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    /// Whose fault.
    pub kind: ErrorKind,
    /// What went wrong, with the place and the fix when known.
    pub message: String,
}

/// Does the work of one task.
#[async_trait::async_trait]
pub trait TaskExecutor: Send + Sync {
    /// Builds `task`'s table.
    async fn execute(&self, task: &TaskSpec, run: &RunInfo) -> Result<TaskOutput, TaskError>;

    /// How much query memory `task` is expected to need (bytes), for a table
    /// with no build recorded yet; `None` when there is no telling. Called
    /// when the task is ready, its upstream built.
    async fn expected_memory(&self, _task: &TaskSpec) -> Option<i64> {
        None
    }

    /// Waits for the work `execute` left running in the background (such as
    /// Delta checkpoints); the runner calls it once every task of a run has
    /// ended, before the run is recorded as finished.
    async fn finish(&self) {}
}

/// The time, injected so tests control it.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Clone)]
pub struct TestClock(Arc<std::sync::Mutex<DateTime<Utc>>>);

impl TestClock {
    /// A clock standing at `t`.
    pub fn new(t: DateTime<Utc>) -> Self {
        Self(Arc::new(std::sync::Mutex::new(t)))
    }
    /// Moves the clock forward.
    pub fn advance(&self, d: chrono::Duration) {
        if let Ok(mut t) = self.0.lock() {
            *t += d;
        }
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
            .lock()
            .map(|t| *t)
            .unwrap_or_else(|e| *e.into_inner())
    }
}

/// RFC 3339 with microseconds, as stored.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The tasks for `selected` nodes of `graph`, in dependency order, each with
/// its upstream nodes (those outside the selection count as already built).
///
/// A partitioned model's task replaces the whole intervals of its grain that
/// end within the run's interval (plus its `lookback`); without a run
/// interval, the latest complete interval before `now`.
pub fn plan(
    project: &strata_project::Project,
    graph: &strata_graph::Graph,
    selected: &std::collections::BTreeSet<String>,
    interval: Option<(DateTime<Utc>, DateTime<Utc>)>,
    now: DateTime<Utc>,
) -> Vec<TaskSpec> {
    graph
        .order()
        .iter()
        .filter(|n| selected.contains(*n))
        .filter_map(|n| graph.node(n))
        .map(|node| {
            let mut t = task_for(project, node);
            if let Some(p) = project
                .models
                .get(&node.name)
                .and_then(|m| m.config.partitioning.as_ref())
            {
                let (start, end) = interval.unwrap_or_else(|| {
                    let end = p.grain.floor(now);
                    (p.grain.prev(end), end)
                });
                t.intervals = p.grain.run_intervals(start, end, p.lookback);
            }
            t
        })
        .collect()
}

/// The task building one node, with its retry and timeout settings.
pub(crate) fn task_for(project: &strata_project::Project, node: &strata_graph::Node) -> TaskSpec {
    let model = project.models.get(&node.name);
    let kind = match &node.kind {
        strata_graph::NodeKind::Source(_) => "ingest".to_string(),
        strata_graph::NodeKind::Model => model
            .map(|m| match m.config.partitioning {
                Some(_) => "replace_range".to_string(),
                None => m.config.materialized.as_str().to_string(),
            })
            .unwrap_or_default(),
    };
    let mut t = TaskSpec::new(node.name.clone(), kind, node.upstream.clone());
    if let Some(m) = model {
        t.retries = m.config.retries;
        t.retry_delay = std::time::Duration::from_secs(m.config.retry_delay_seconds.max(0) as u64);
        t.timeout = m
            .config
            .timeout_seconds
            .map(|s| std::time::Duration::from_secs(s.max(0) as u64));
    }
    t
}
