//! The DAG executor.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use strata_state::{LockHolder, RunRecord, StateStore, TaskRecord};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::{Clock, RunInfo, SystemClock, TaskError, TaskExecutor, TaskOutput, TaskSpec, rfc3339};

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The selection expression, as recorded.
    pub selection: String,
    /// Rebuild incremental and scd2 models from scratch.
    pub full_refresh: bool,
    /// What started the run (`cli` by default).
    pub trigger: Option<String>,
    /// The run this one resumes (its finished tasks are not in the plan).
    pub resumed_from: Option<String>,
    /// The data interval `[start, end)` the run covers.
    pub interval: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// The run's id, when the caller chose it (see [`new_run_id`]); else a new one.
    pub run_id: Option<String>,
}

/// What happened in a run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run's id.
    pub run_id: String,
    /// `success` or `failed`.
    pub status: String,
    /// Every task, in plan order.
    pub tasks: Vec<TaskRecord>,
    /// Wall time.
    pub duration: std::time::Duration,
    /// Runs found dead and marked interrupted when this run started.
    pub interrupted: Vec<String>,
}

impl RunSummary {
    /// True when every task succeeded or was skipped.
    pub fn ok(&self) -> bool {
        self.status == "success"
    }
}

/// What the runner reports while it works (for progress bars).
#[derive(Debug, Clone)]
pub enum Event {
    /// A run started with this many tasks.
    RunStarted {
        /// Run id.
        run_id: String,
        /// Number of tasks.
        tasks: usize,
    },
    /// A task started.
    TaskStarted {
        /// Task name.
        task: String,
    },
    /// A task ended (any status).
    TaskFinished {
        /// Its record.
        record: Box<TaskRecord>,
    },
}

/// Receives [`Event`]s.
pub trait Observer: Send + Sync {
    /// Called for each event, in order, from the runner's task.
    fn on_event(&self, event: &Event);
}

struct NoObserver;
impl Observer for NoObserver {
    fn on_event(&self, _: &Event) {}
}

/// Runs plans of tasks.
pub struct Runner {
    state: StateStore,
    max_parallel: usize,
    clock: Arc<dyn Clock>,
    observer: Arc<dyn Observer>,
    memory_budget: strata_project::MemoryBudget,
}

impl Runner {
    /// A runner recording into `state`, running up to `max_parallel` tasks at once.
    pub fn new(state: StateStore, max_parallel: usize) -> Self {
        Self {
            state,
            max_parallel: max_parallel.max(1),
            clock: Arc::new(SystemClock),
            observer: Arc::new(NoObserver),
            memory_budget: strata_project::MemoryBudget::Auto,
        }
    }

    /// Budgets the query memory of tasks running side by side (see
    /// `[project] memory_budget`; `Auto` by default).
    pub fn with_memory_budget(mut self, budget: strata_project::MemoryBudget) -> Self {
        self.memory_budget = budget;
        self
    }

    /// Uses `clock` for all timestamps.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Reports progress to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Runs `tasks` (in a valid dependency order; upstream names outside the
    /// plan count as already done) and records everything.
    pub async fn run(
        &self,
        executor: Arc<dyn TaskExecutor>,
        tasks: Vec<TaskSpec>,
        options: RunOptions,
    ) -> Result<RunSummary, strata_state::Error> {
        let started = self.clock.now();
        let run_id = options
            .run_id
            .clone()
            .unwrap_or_else(|| new_run_id(started));
        let span = tracing::info_span!("run", run_id = %run_id);
        self.run_as(executor, tasks, options, started, run_id)
            .instrument(span)
            .await
    }

    async fn run_as(
        &self,
        executor: Arc<dyn TaskExecutor>,
        tasks: Vec<TaskSpec>,
        options: RunOptions,
        started: DateTime<Utc>,
        run_id: String,
    ) -> Result<RunSummary, strata_state::Error> {
        let wall = std::time::Instant::now();
        let me = LockHolder {
            run_id: run_id.clone(),
            host: host_name(),
            pid: i64::from(std::process::id()),
            acquired_at: rfc3339(started),
            heartbeat_at: rfc3339(started),
        };
        if let Err(holder) = self.state.acquire_run_lock(&me, is_alive).await? {
            return Err(strata_state::Error::Busy(format!(
                "run {} (pid {} on {}, since {}) is still in progress; wait for it to finish",
                holder.run_id, holder.pid, holder.host, holder.acquired_at
            )));
        }
        // Holding the lock, every other run still marked running is dead.
        let interrupted = self.state.mark_interrupted(&run_id).await?;
        // A sign of life for processes on other hosts, until the run ends.
        // Dropping the set (however the run ends) stops the heartbeat.
        let mut _heartbeat = JoinSet::new();
        {
            let (state, clock, id) = (self.state.clone(), self.clock.clone(), run_id.clone());
            _heartbeat.spawn(async move {
                let mut every = tokio::time::interval(HEARTBEAT_EVERY);
                loop {
                    every.tick().await;
                    if let Err(e) = state.heartbeat(&id, &rfc3339(clock.now())).await {
                        tracing::warn!("cannot refresh the run lock: {e}");
                    }
                }
            });
        }
        self.state
            .create_run(&RunRecord {
                run_id: run_id.clone(),
                started_at: rfc3339(started),
                ended_at: None,
                status: "running".into(),
                selection: options.selection.clone(),
                full_refresh: options.full_refresh,
                trigger: options.trigger.clone().unwrap_or_else(|| "cli".into()),
                resumed_from: options.resumed_from.clone(),
                interval: options.interval.map(|(a, b)| (rfc3339(a), rfc3339(b))),
            })
            .await?;
        tracing::info!(
            tasks = tasks.len(),
            selection = %options.selection,
            trigger = %options.trigger.as_deref().unwrap_or("cli"),
            "run started"
        );
        self.observer.on_event(&Event::RunStarted {
            run_id: run_id.clone(),
            tasks: tasks.len(),
        });
        let info = RunInfo {
            run_id: run_id.clone(),
            started_at: started,
            full_refresh: options.full_refresh,
            interval: options.interval,
        };

        let names: BTreeSet<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
        let mut waiting: BTreeMap<String, usize> = BTreeMap::new();
        let mut downstream: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in &tasks {
            let ups: Vec<&String> = t
                .upstream
                .iter()
                .filter(|u| names.contains(u.as_str()))
                .collect();
            waiting.insert(t.name.clone(), ups.len());
            for u in ups {
                downstream
                    .entry(u.clone())
                    .or_default()
                    .push(t.name.clone());
            }
        }
        let by_name: BTreeMap<String, TaskSpec> =
            tasks.iter().map(|t| (t.name.clone(), t.clone())).collect();
        let order: Vec<String> = tasks.iter().map(|t| t.name.clone()).collect();
        let mut ready: VecDeque<String> =
            order.iter().filter(|n| waiting[*n] == 0).cloned().collect();
        let mut records: BTreeMap<String, TaskRecord> = BTreeMap::new();
        // (task, started, result, attempts)
        let mut running: JoinSet<Finished> = JoinSet::new();
        let mut failed_any = false;
        let mut ids: std::collections::HashMap<tokio::task::Id, String> =
            std::collections::HashMap::new();
        let mut starts: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        let mut cpu = crate::cpu::CpuShares::new();
        let mut memory = crate::memory::MemoryBudget::new(
            self.memory_budget,
            if self.memory_budget == strata_project::MemoryBudget::Off {
                BTreeMap::new()
            } else {
                self.state.peak_memory_by_model().await?
            },
            by_name.values().map(|t| t.table.as_str()),
        );

        loop {
            while running.len() < self.max_parallel
                && let Some(name) = ready.front().cloned()
            {
                let spec = by_name[&name].clone();
                if memory.enabled() && !memory.knows(&spec.table) {
                    let guess = executor.expected_memory(&spec).await;
                    memory.expect(&spec.table, guess.unwrap_or(0));
                }
                if !memory.admits(&spec.table, running.is_empty()) {
                    tracing::debug!(task = %name, "waiting for memory");
                    break;
                }
                ready.pop_front();
                memory.start(&name, &spec.table);
                let start = self.clock.now();
                let rec = TaskRecord {
                    run_id: run_id.clone(),
                    task: name.clone(),
                    model: spec.table.clone(),
                    kind: spec.kind.clone(),
                    status: "running".into(),
                    started_at: Some(rfc3339(start)),
                    ..Default::default()
                };
                self.state.upsert_task(&rec).await?;
                cpu.start(&name);
                self.observer
                    .on_event(&Event::TaskStarted { task: name.clone() });
                let exec = executor.clone();
                let mut info = info.clone();
                if spec.interval.is_some() {
                    info.interval = spec.interval;
                }
                let span = tracing::info_span!("task", task = %name);
                let handle = running.spawn(
                    async move {
                        tracing::info!(kind = %spec.kind, "task started");
                        let (r, attempts) = attempt(exec.as_ref(), &spec, &info).await;
                        (spec.name, start, r, attempts)
                    }
                    .instrument(span),
                );
                ids.insert(handle.id(), name.clone());
                starts.insert(name.clone(), start);
            }
            let Some(joined) = running.join_next_with_id().await else {
                break;
            };
            let (name, start, result, attempts) = match joined {
                Ok((_, v)) => v,
                Err(e) => {
                    // A panicking task is a bug in Strata: fail that task, keep the run going.
                    let name = ids.remove(&e.id()).unwrap_or_default();
                    let start = starts
                        .get(&name)
                        .copied()
                        .unwrap_or_else(|| self.clock.now());
                    let message = format!("task panicked (a bug in Strata): {e}");
                    (
                        name,
                        start,
                        Err(TaskError {
                            kind: crate::ErrorKind::Internal,
                            message,
                        }),
                        1,
                    )
                }
            };
            let end = self.clock.now();
            let cpu_ms = cpu.finish(&name);
            memory.finish(&name);
            // What the task freed goes back to the system before the next one
            // starts (crate::heap: glibc keeps it otherwise).
            crate::heap::release_freed();
            let kind = by_name
                .get(&name)
                .map(|s| s.kind.clone())
                .unwrap_or_default();
            let mut rec = TaskRecord {
                run_id: run_id.clone(),
                task: name.clone(),
                kind,
                started_at: Some(rfc3339(start)),
                ended_at: Some(rfc3339(end)),
                attempts,
                model: by_name
                    .get(&name)
                    .map(|s| s.table.clone())
                    .unwrap_or_else(|| name.clone()),
                cpu_ms,
                ..Default::default()
            };
            let spec_intervals = by_name
                .get(&name)
                .map(|s| s.intervals.clone())
                .unwrap_or_default();
            if !spec_intervals.is_empty() {
                let records = crate::intervals::outcome(
                    by_name
                        .get(&name)
                        .map(|s| s.table.as_str())
                        .unwrap_or(&name),
                    &spec_intervals,
                    &result,
                    &run_id,
                    &rfc3339(end),
                );
                self.state.record_intervals(&records).await?;
            }
            let ok = match result {
                Ok(out) => {
                    rec.status = if out.skipped {
                        "skipped".into()
                    } else {
                        "success".into()
                    };
                    rec.rows_read = out.rows_read;
                    rec.rows_written = out.rows_written;
                    rec.rows_quarantined = out.rows_quarantined;
                    rec.delta_version = out.delta_version;
                    rec.message = out.message;
                    rec.rows_dropped = out.rows_dropped;
                    rec.bytes_read = out.bytes_read;
                    rec.bytes_written = out.bytes_written;
                    rec.peak_memory = out.peak_memory;
                    rec.table_rows = out.table_rows;
                    rec.data_time = out.data_time;
                    true
                }
                Err(e) => {
                    rec.status = "failed".into();
                    rec.error = Some(e.message);
                    false
                }
            };
            self.state.upsert_task(&rec).await?;
            {
                let _task = tracing::info_span!("task", task = %name).entered();
                match rec.status.as_str() {
                    "failed" => tracing::error!(
                        attempts = rec.attempts,
                        error = %rec.error.as_deref().unwrap_or_default(),
                        "task failed"
                    ),
                    status => tracing::info!(
                        status,
                        rows_read = rec.rows_read,
                        rows_written = rec.rows_written,
                        rows_quarantined = rec.rows_quarantined,
                        cpu_ms = rec.cpu_ms,
                        bytes_written = rec.bytes_written,
                        peak_memory = rec.peak_memory,
                        delta_version = rec.delta_version,
                        attempts = rec.attempts,
                        "task finished"
                    ),
                }
            }
            self.observer.on_event(&Event::TaskFinished {
                record: Box::new(rec.clone()),
            });
            records.insert(name.clone(), rec);
            if ok {
                for d in downstream.get(&name).cloned().unwrap_or_default() {
                    if let Some(w) = waiting.get_mut(&d) {
                        *w -= 1;
                        if *w == 0 && !records.contains_key(&d) {
                            ready.push_back(d);
                        }
                    }
                }
                // keep plan order among ready tasks
                let pos: BTreeMap<&String, usize> =
                    order.iter().enumerate().map(|(i, n)| (n, i)).collect();
                ready
                    .make_contiguous()
                    .sort_by_key(|n| pos.get(n).copied().unwrap_or(usize::MAX));
            } else {
                failed_any = true;
                let mut stack = downstream.get(&name).cloned().unwrap_or_default();
                while let Some(d) = stack.pop() {
                    if records.contains_key(&d) {
                        continue;
                    }
                    let skipped = TaskRecord {
                        run_id: run_id.clone(),
                        task: d.clone(),
                        model: by_name
                            .get(&d)
                            .map(|s| s.table.clone())
                            .unwrap_or_else(|| d.clone()),
                        kind: by_name.get(&d).map(|s| s.kind.clone()).unwrap_or_default(),
                        status: "upstream_failed".into(),
                        message: Some(format!("not run: upstream {name} failed")),
                        ..Default::default()
                    };
                    self.state.upsert_task(&skipped).await?;
                    self.observer.on_event(&Event::TaskFinished {
                        record: Box::new(skipped.clone()),
                    });
                    records.insert(d.clone(), skipped);
                    stack.extend(downstream.get(&d).cloned().unwrap_or_default());
                }
            }
        }
        executor.finish().await;
        let status = if failed_any { "failed" } else { "success" };
        tracing::info!(
            status,
            seconds = wall.elapsed().as_secs_f64(),
            "run finished"
        );
        self.state.release_run_lock(&run_id).await?;
        self.state
            .finish_run(&run_id, status, &rfc3339(self.clock.now()))
            .await?;
        let tasks = order.iter().filter_map(|n| records.remove(n)).collect();
        Ok(RunSummary {
            run_id,
            status: status.into(),
            tasks,
            duration: wall.elapsed(),
            interrupted,
        })
    }
}

/// A finished task: its name, start, result and attempts.
type Finished = (String, DateTime<Utc>, Result<TaskOutput, TaskError>, i64);

/// Runs a task, retrying failures that are not the user's fault with
/// exponential backoff, each attempt bounded by the task's timeout.
async fn attempt(
    exec: &dyn TaskExecutor,
    spec: &TaskSpec,
    info: &RunInfo,
) -> (Result<TaskOutput, TaskError>, i64) {
    let mut attempts: i64 = 0;
    loop {
        attempts += 1;
        let result = match spec.timeout {
            Some(limit) => match tokio::time::timeout(limit, exec.execute(spec, info)).await {
                Ok(r) => r,
                Err(_) => Err(TaskError {
                    kind: crate::ErrorKind::External,
                    message: format!(
                        "timed out after {}s (timeout in the model header)",
                        limit.as_secs()
                    ),
                }),
            },
            None => exec.execute(spec, info).await,
        };
        match result {
            Err(e) if e.kind != crate::ErrorKind::User && attempts <= i64::from(spec.retries) => {
                let factor = 1u32 << (attempts - 1).clamp(0, 16) as u32;
                tracing::warn!(
                    attempt = attempts,
                    error = %e.message,
                    retry_in_ms = spec.retry_delay.saturating_mul(factor).as_millis() as u64,
                    "task attempt failed; retrying"
                );
                tokio::time::sleep(spec.retry_delay.saturating_mul(factor)).await;
            }
            Err(mut e) if attempts > 1 => {
                e.message = format!("{} (after {attempts} attempts)", e.message);
                return (Err(e), attempts);
            }
            other => return (other, attempts),
        }
    }
}

/// This machine's name, as the run lock and schedule claims record it.
pub fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// How often a running run refreshes its lock's heartbeat.
const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// A holder on another host without a heartbeat for this long is dead.
const HEARTBEAT_TIMEOUT: chrono::Duration = chrono::Duration::seconds(60);

/// Whether a lock holder's process still runs. On this host the process table
/// tells; on another host, a heartbeat in the last minute (the hosts' clocks
/// must roughly agree).
fn is_alive(h: &LockHolder) -> bool {
    if h.host != host_name() {
        return chrono::DateTime::parse_from_rfc3339(&h.heartbeat_at)
            .map(|t| Utc::now() - t.with_timezone(&Utc) < HEARTBEAT_TIMEOUT)
            .unwrap_or(false);
    }
    std::path::Path::new(&format!("/proc/{}", h.pid)).exists()
}

/// A sortable, readable run id: `20260101T020000Z-1a2b3c`.
/// A new, unique run id for a run starting at `t` (sortable by time).
pub fn new_run_id(t: DateTime<Utc>) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", t.format("%Y%m%dT%H%M%SZ"), &suffix[..6])
}

#[cfg(test)]
mod tests;
