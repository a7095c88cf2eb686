//! Data intervals of partitioned models: what a task's outcome records, the
//! gaps `strata status` shows, and the plan of a backfill.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use strata_project::{Grain, Interval, Project};
use strata_state::{IntervalRecord, StateStore};

use crate::{TaskError, TaskOutput, TaskSpec, rfc3339};

/// The interval records a finished task leaves: `done` (or `late` when its
/// rows changed after an earlier build) on success, `failed` on failure.
/// A skipped task leaves none.
pub(crate) fn outcome(
    model: &str,
    intervals: &[Interval],
    result: &Result<TaskOutput, TaskError>,
    run_id: &str,
    now: &str,
) -> Vec<IntervalRecord> {
    let base = |i: &Interval, status: &str| IntervalRecord {
        model: model.to_string(),
        start: rfc3339(i.start),
        end: rfc3339(i.end),
        status: status.to_string(),
        run_id: run_id.to_string(),
        updated_at: now.to_string(),
        attempts: 1,
        ..Default::default()
    };
    match result {
        Ok(out) if out.skipped => vec![],
        Ok(out) => intervals
            .iter()
            .map(|i| {
                let written = out.intervals.iter().find(|r| r.interval == *i);
                let mut r = base(
                    i,
                    if written.is_some_and(|w| w.late) {
                        "late"
                    } else {
                        "done"
                    },
                );
                r.rows = Some(written.map(|w| w.rows).unwrap_or(0));
                r
            })
            .collect(),
        Err(e) => intervals
            .iter()
            .map(|i| {
                let mut r = base(i, "failed");
                r.error = Some(e.message.clone());
                r
            })
            .collect(),
    }
}

/// The state of one partitioned model's intervals, for `strata status`.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalStatus {
    /// The model.
    pub model: String,
    /// Its grain.
    pub grain: Grain,
    /// The first recorded interval's start and the last one's end.
    pub span: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Intervals built and unchanged since.
    pub done: usize,
    /// Intervals built, then rebuilt with rows that arrived late.
    pub late: usize,
    /// Intervals whose last build failed.
    pub failed: usize,
    /// Intervals inside the span never built.
    pub missing: usize,
    /// Runs of consecutive failed or missing intervals: (start, end, `failed`
    /// or `missing`, how many intervals).
    pub gaps: Vec<(DateTime<Utc>, DateTime<Utc>, &'static str, usize)>,
}

use strata_project::parse_time as parse;

/// Counts and gaps of a partitioned model's intervals, from the state store.
pub async fn interval_status(
    state: &StateStore,
    model: &str,
    grain: Grain,
) -> Result<IntervalStatus, strata_state::Error> {
    let records = state.interval_states(model).await?;
    let by_start: BTreeMap<DateTime<Utc>, &str> = records
        .iter()
        .filter_map(|(start, status)| Some((parse(start)?, status.as_str())))
        .collect();
    let mut st = IntervalStatus {
        model: model.to_string(),
        grain,
        span: None,
        done: 0,
        late: 0,
        failed: 0,
        missing: 0,
        gaps: vec![],
    };
    let (Some(first), Some(last)) = (
        by_start.keys().next().copied(),
        by_start.keys().next_back().map(|l| grain.next(*l)),
    ) else {
        return Ok(st);
    };
    st.span = Some((first, last));
    let mut t = first;
    let mut gap: Option<(DateTime<Utc>, DateTime<Utc>, &'static str, usize)> = None;
    while t < last {
        let next = grain.next(t);
        let kind = match by_start.get(&t).copied() {
            Some("done") => {
                st.done += 1;
                None
            }
            Some("late") => {
                st.late += 1;
                None
            }
            Some(_) => {
                st.failed += 1;
                Some("failed")
            }
            None => {
                st.missing += 1;
                Some("missing")
            }
        };
        gap = match (gap, kind) {
            (Some((s, _, k, n)), Some(k2)) if k == k2 => Some((s, next, k, n + 1)),
            (g, k2) => {
                if let Some(g) = g {
                    st.gaps.push(g);
                }
                k2.map(|k| (t, next, k, 1))
            }
        };
        t = next;
    }
    if let Some(g) = gap {
        st.gaps.push(g);
    }
    Ok(st)
}

/// What a backfill will do for one model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelIntervals {
    /// The table.
    pub model: String,
    /// Its grain, when partitioned.
    pub grain: Option<Grain>,
    /// Intervals in the range (1 for a model that is not partitioned).
    pub total: usize,
    /// Of those, already done (or late) and kept.
    pub done: usize,
    /// Of those to run, how many failed before.
    pub failed: usize,
    /// Intervals to run.
    pub to_run: Vec<Interval>,
}

/// A backfill: its tasks and, per model, what they cover.
#[derive(Debug, Clone)]
pub struct BackfillPlan {
    /// Tasks in dependency order.
    pub tasks: Vec<TaskSpec>,
    /// Per selected model, in order.
    pub models: Vec<ModelIntervals>,
}

/// One table's tasks in a backfill: interval start → (end, task name).
type TasksByStart = BTreeMap<DateTime<Utc>, (DateTime<Utc>, String)>;

/// A task name for one interval: `silver.events[2024-01-01]`.
pub fn interval_task_name(table: &str, grain: Grain, i: &Interval) -> String {
    let label = match grain {
        Grain::Hour => i.start.format("%Y-%m-%dT%H:00"),
        Grain::Day => i.start.format("%Y-%m-%d"),
        Grain::Month => i.start.format("%Y-%m"),
    };
    format!("{table}[{label}]")
}

/// Plans a backfill of `[start, end)`: every interval of each selected
/// partitioned model's grain that is not done yet (failed or missing), one
/// task each, after the same interval of its partitioned upstream; other
/// selected tables once, after all their upstream tasks.
pub async fn backfill_plan(
    project: &Project,
    graph: &strata_graph::Graph,
    selected: &BTreeSet<String>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    state: &StateStore,
) -> Result<BackfillPlan, strata_state::Error> {
    let mut tasks: Vec<TaskSpec> = vec![];
    let mut models = vec![];
    // Per table in the plan: its tasks by interval start (unpartitioned: one, at start).
    let mut planned: BTreeMap<String, TasksByStart> = BTreeMap::new();
    for node in graph
        .order()
        .iter()
        .filter(|n| selected.contains(*n))
        .filter_map(|n| graph.node(n))
    {
        let base = crate::task_for(project, node);
        let partitioning = project
            .models
            .get(&node.name)
            .and_then(|m| m.config.partitioning.clone());
        let upstream_in = |a: DateTime<Utc>, b: DateTime<Utc>| -> Vec<String> {
            let mut ups = vec![];
            for u in &node.upstream {
                if let Some(tasks_of_u) = planned.get(u) {
                    ups.extend(
                        tasks_of_u
                            .range(..b)
                            .rev()
                            .take_while(|(_, (e, _))| *e > a)
                            .map(|(_, (_, n))| n.clone()),
                    );
                }
            }
            ups
        };
        let mut mine = BTreeMap::new();
        match partitioning {
            Some(p) => {
                let all = p.grain.intervals(start, end);
                let done: BTreeMap<DateTime<Utc>, String> = state
                    .interval_states(&node.name)
                    .await?
                    .into_iter()
                    .filter_map(|(start, status)| Some((parse(&start)?, status)))
                    .collect();
                let mut m = ModelIntervals {
                    model: node.name.clone(),
                    grain: Some(p.grain),
                    total: all.len(),
                    done: 0,
                    failed: 0,
                    to_run: vec![],
                };
                for i in all {
                    match done.get(&i.start).map(String::as_str) {
                        Some("done") | Some("late") => m.done += 1,
                        other => {
                            if other.is_some() {
                                m.failed += 1;
                            }
                            let mut t = base.clone();
                            t.name = interval_task_name(&node.name, p.grain, &i);
                            t.upstream = upstream_in(i.start, i.end);
                            t.interval = Some((i.start, i.end));
                            t.intervals = vec![i];
                            mine.insert(i.start, (i.end, t.name.clone()));
                            tasks.push(t);
                            m.to_run.push(i);
                        }
                    }
                }
                models.push(m);
            }
            None => {
                let mut t = base;
                t.upstream = upstream_in(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
                t.interval = Some((start, end));
                mine.insert(start, (end, t.name.clone()));
                tasks.push(t);
                models.push(ModelIntervals {
                    model: node.name.clone(),
                    grain: None,
                    total: 1,
                    done: 0,
                    failed: 0,
                    to_run: vec![Interval { start, end }],
                });
            }
        }
        planned.insert(node.name.clone(), mine);
    }
    Ok(BackfillPlan { tasks, models })
}
