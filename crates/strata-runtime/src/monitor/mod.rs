//! Monitoring: the health of a project read from the state store (failed
//! tasks and runs, failing checks, freshness against SLAs, volume and duration
//! anomalies, schema changes) and the alerting that turns it into
//! de-duplicated notifications.
//!
//! [`evaluate`] computes every condition that holds *now*; [`alerts::reconcile`]
//! compares them with the open incidents of each `[alerts.NAME]` rule: a new
//! condition opens an incident and notifies once, a condition still holding
//! is re-sent only after the rule's `repeat_after`, and an incident whose
//! condition is gone is resolved (with one "resolved" message). Nothing here
//! sleeps: the caller passes the time.

pub mod alerts;
pub mod anomaly;
pub mod channels;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;
use strata_project::{AlertOn, Project};
use strata_state::{StateStore, TaskRecord};

pub use alerts::{Alert, Delivery, Notifier, reconcile};
pub use anomaly::{Anomaly, anomalies};

/// Something wrong right now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Condition {
    /// What kind of problem.
    #[serde(serialize_with = "ser_kind")]
    pub kind: AlertOn,
    /// What it is about, unique per kind (`silver.orders`, `product revenue`,
    /// `silver.orders: not_null(order_id)`).
    pub subject: String,
    /// `error`, `warn` or `info`.
    pub severity: String,
    /// One line for people.
    pub summary: String,
    /// The tables it concerns (for the rules' `select` and `owner`).
    pub tables: Vec<String>,
    /// Every detail, for the JSON body.
    pub fields: serde_json::Map<String, serde_json::Value>,
}

fn ser_kind<S: serde::Serializer>(k: &AlertOn, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(k.as_str())
}

/// A table's freshness against its SLA.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Freshness {
    /// The table.
    pub table: String,
    /// When it last received rows (RFC 3339), if ever.
    pub loaded_at: Option<String>,
    /// The newest data timestamp it holds, when recorded.
    pub data_time: Option<String>,
    /// Now minus the last load, in seconds (None: never loaded).
    pub lag_seconds: Option<i64>,
    /// The strictest SLA on it (its own `freshness` or a data product's), in seconds.
    pub sla_seconds: Option<i64>,
    /// Where the SLA comes from: `model`, `source` or `product NAME`.
    pub sla_from: Option<String>,
}

impl Freshness {
    /// Staler than its SLA (or never loaded while it has one).
    pub fn stale(&self) -> bool {
        match (self.sla_seconds, self.lag_seconds) {
            (Some(sla), Some(lag)) => lag > sla,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// The project's health at one moment.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// The time it was evaluated at.
    pub at: Option<DateTime<Utc>>,
    /// Every condition that holds.
    pub conditions: Vec<Condition>,
    /// Freshness of every table that has been loaded or has an SLA.
    pub freshness: Vec<Freshness>,
    /// The latest finished task of every table.
    pub latest: BTreeMap<String, TaskRecord>,
    /// Anomalies of the latest runs (after grouping by root cause).
    pub anomalies: Vec<Anomaly>,
}

/// Reads the state store and computes every condition that holds at `now`.
pub async fn evaluate(
    store: &StateStore,
    project: &Project,
    graph: &strata_graph::Graph,
    now: DateTime<Utc>,
) -> Result<Health, strata_state::Error> {
    let latest = store.latest_tasks().await?;
    let mut conditions = vec![];

    // Runs: the latest finished run of each selection.
    let mut seen = BTreeSet::new();
    for run in store.runs(200).await? {
        if run.status == "running" || !seen.insert(run.selection.clone()) {
            continue;
        }
        if run.status == "failed" || run.status == "interrupted" {
            let tasks = store.tasks(&run.run_id).await?;
            let failed: Vec<&TaskRecord> = tasks.iter().filter(|t| t.status == "failed").collect();
            let shown = if run.selection.is_empty() {
                "everything".to_string()
            } else {
                run.selection.clone()
            };
            let mut fields = serde_json::Map::new();
            fields.insert("run_id".into(), run.run_id.clone().into());
            fields.insert("selection".into(), shown.clone().into());
            fields.insert("status".into(), run.status.clone().into());
            fields.insert(
                "failed_tasks".into(),
                failed
                    .iter()
                    .map(|t| t.task.clone())
                    .collect::<Vec<_>>()
                    .into(),
            );
            conditions.push(Condition {
                kind: AlertOn::RunFailed,
                subject: format!("run of {shown}"),
                severity: "error".into(),
                summary: match failed.len() {
                    0 => format!("run {} {}", run.run_id, run.status),
                    n => format!(
                        "run {} failed: {n} task{} failed ({})",
                        run.run_id,
                        if n == 1 { "" } else { "s" },
                        failed
                            .iter()
                            .map(|t| t.task.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                },
                tables: failed.iter().map(|t| t.model.clone()).collect(),
                fields,
            });
        }
    }

    // Tasks: the latest task of each table failed.
    for (model, t) in &latest {
        if t.status != "failed" {
            continue;
        }
        let mut fields = serde_json::Map::new();
        fields.insert("run_id".into(), t.run_id.clone().into());
        fields.insert("task".into(), t.task.clone().into());
        fields.insert("attempts".into(), t.attempts.into());
        fields.insert("error".into(), t.error.clone().unwrap_or_default().into());
        conditions.push(Condition {
            kind: AlertOn::TaskFailed,
            subject: model.clone(),
            severity: "error".into(),
            summary: format!(
                "{} failed after {} attempt{}: {}",
                t.task,
                t.attempts,
                if t.attempts == 1 { "" } else { "s" },
                first_line(t.error.as_deref().unwrap_or("unknown error"))
            ),
            tables: vec![model.clone()],
            fields,
        });
    }

    // Checks: the newest result of each check.
    for c in store.latest_check_results().await? {
        if c.status == "pass" || !project.has_table(&c.model) {
            continue;
        }
        // A per-row expectation that dropped or quarantined rows did its job.
        if c.kind == "row" && c.status != "fail" {
            continue;
        }
        let severity = if c.status == "fail" { "error" } else { "warn" };
        let mut fields = serde_json::Map::new();
        fields.insert("model".into(), c.model.clone().into());
        fields.insert("check".into(), c.check_name.clone().into());
        fields.insert("failing_rows".into(), c.failing_rows.into());
        fields.insert("run_id".into(), c.run_id.clone().into());
        fields.insert(
            "sample".into(),
            serde_json::from_str(&c.sample).unwrap_or(serde_json::Value::Null),
        );
        conditions.push(Condition {
            kind: AlertOn::CheckFailed,
            subject: format!("{}: {}", c.model, c.check_name),
            severity: severity.into(),
            summary: format!(
                "check {} on {} {}: {} failing row{}",
                c.check_name,
                c.model,
                if severity == "error" {
                    "failed"
                } else {
                    "warns"
                },
                c.failing_rows,
                if c.failing_rows == 1 { "" } else { "s" }
            ),
            tables: vec![c.model.clone()],
            fields,
        });
    }

    // Freshness: one incident per stale table whose upstream is fresh; the
    // stale tables downstream of it are listed in it, not alerted apart.
    let freshness = freshness(store, project, now).await?;
    let stale: BTreeSet<&str> = freshness
        .iter()
        .filter(|f| f.stale())
        .map(|f| f.table.as_str())
        .collect();
    let stale_upstream = |t: &str| -> Vec<String> {
        graph
            .upstream_closure(t)
            .into_iter()
            .filter(|u| u != t && stale.contains(u.as_str()))
            .collect()
    };
    let mut explained: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in freshness.iter().filter(|f| f.stale()) {
        if let Some(root) = stale_upstream(&f.table)
            .into_iter()
            .find(|u| stale_upstream(u).is_empty())
        {
            explained.entry(root).or_default().push(f.table.clone());
        }
    }
    let folded: BTreeSet<String> = explained.values().flatten().cloned().collect();
    for f in freshness
        .iter()
        .filter(|f| f.stale() && !folded.contains(&f.table))
    {
        let also = explained.get(&f.table).cloned().unwrap_or_default();
        let mut fields = serde_json::Map::new();
        fields.insert("table".into(), f.table.clone().into());
        fields.insert("loaded_at".into(), f.loaded_at.clone().into());
        fields.insert("lag_seconds".into(), f.lag_seconds.into());
        fields.insert("sla_seconds".into(), f.sla_seconds.into());
        fields.insert("sla_from".into(), f.sla_from.clone().into());
        fields.insert("also_stale".into(), also.clone().into());
        let sla = human_seconds(f.sla_seconds.unwrap_or(0));
        let also_text = if also.is_empty() {
            String::new()
        } else {
            format!("; downstream also stale: {}", also.join(", "))
        };
        let mut tables = vec![f.table.clone()];
        tables.extend(also.iter().cloned());
        conditions.push(Condition {
            kind: AlertOn::SlaMissed,
            subject: f.table.clone(),
            severity: "error".into(),
            summary: match f.lag_seconds {
                Some(lag) => format!(
                    "{} is {} old, over its freshness SLA of {sla} ({}){also_text}",
                    f.table,
                    human_seconds(lag),
                    f.sla_from.clone().unwrap_or_default()
                ),
                None => format!(
                    "{} has never been loaded; its freshness SLA is {sla}{also_text}",
                    f.table
                ),
            },
            tables,
            fields,
        });
    }

    // Anomalies of the latest runs.
    let anomalies = if project.monitoring.anomaly_detection {
        let history = store
            .task_history(project.monitoring.anomaly_window as i64 + 1)
            .await?;
        anomaly::anomalies(&history, &latest, graph, &project.monitoring)
    } else {
        vec![]
    };
    for a in &anomalies {
        conditions.push(a.condition());
    }

    // Schema changes of the last week, one incident per source and run.
    let since = super::rfc3339(now - chrono::Duration::days(7));
    let mut by_batch: BTreeMap<(String, String), Vec<strata_state::SchemaEvent>> = BTreeMap::new();
    for e in store.schema_events_since(&since).await? {
        by_batch
            .entry((e.source.clone(), e.run_id.clone()))
            .or_default()
            .push(e);
    }
    for ((source, run_id), events) in by_batch {
        let table = format!("bronze.{source}");
        let changes: Vec<String> = events
            .iter()
            .map(|e| match e.change.as_str() {
                "column_added" => format!("+{} {}", e.column, e.column_type),
                "column_missing" => format!("-{}", e.column),
                "column_retyped" => format!("~{} {}", e.column, e.column_type),
                other => format!("{other} {}", e.column),
            })
            .collect();
        let mut fields = serde_json::Map::new();
        fields.insert("source".into(), source.clone().into());
        fields.insert("run_id".into(), run_id.clone().into());
        fields.insert(
            "changes".into(),
            events
                .iter()
                .map(|e| {
                    serde_json::json!({"change": e.change, "column": e.column, "type": e.column_type, "file": e.file})
                })
                .collect::<Vec<_>>()
                .into(),
        );
        conditions.push(Condition {
            kind: AlertOn::SchemaChanged,
            subject: format!("{table} in run {run_id}"),
            severity: "warn".into(),
            summary: format!("schema of source {source} changed: {}", changes.join(", ")),
            tables: vec![table],
            fields,
        });
    }

    Ok(Health {
        at: Some(now),
        conditions,
        freshness,
        latest,
        anomalies,
    })
}

/// Freshness of every table with an SLA or a load, worst first.
pub async fn freshness(
    store: &StateStore,
    project: &Project,
    now: DateTime<Utc>,
) -> Result<Vec<Freshness>, strata_state::Error> {
    let loads = store.last_loads().await?;
    // The strictest SLA of each table.
    let mut slas: BTreeMap<String, (i64, String)> = BTreeMap::new();
    let mut tighten = |table: &str, sla: i64, from: String| {
        let e = slas.entry(table.to_string()).or_insert((sla, from.clone()));
        if sla < e.0 {
            *e = (sla, from);
        }
    };
    for s in project.sources.values() {
        if let Some(sla) = s.freshness_seconds {
            tighten(&s.table(), sla, "source".into());
        }
    }
    for m in project.models.values() {
        if let Some(sla) = m.config.freshness_seconds {
            tighten(&m.name, sla, "model".into());
        }
    }
    for p in project.products.values() {
        if let Some(sla) = p.freshness_seconds {
            for m in &p.models {
                tighten(m, sla, format!("product {}", p.name));
            }
        }
    }
    let mut tables: BTreeSet<String> = slas.keys().cloned().collect();
    tables.extend(loads.keys().filter(|t| project.has_table(t)).cloned());
    let mut out: Vec<Freshness> = tables
        .into_iter()
        .map(|table| {
            let load = loads.get(&table);
            let lag = load.and_then(|l| {
                DateTime::parse_from_rfc3339(&l.loaded_at)
                    .ok()
                    .map(|t| (now - t.with_timezone(&Utc)).num_seconds().max(0))
            });
            let sla = slas.get(&table);
            Freshness {
                loaded_at: load.map(|l| l.loaded_at.clone()),
                data_time: load.and_then(|l| l.data_time.clone()),
                lag_seconds: lag,
                sla_seconds: sla.map(|s| s.0),
                sla_from: sla.map(|s| s.1.clone()),
                table,
            }
        })
        .collect();
    out.sort_by_key(|f| {
        (
            !f.stale(),
            std::cmp::Reverse(f.lag_seconds.unwrap_or(i64::MAX)),
        )
    });
    Ok(out)
}

/// `93784` → `1d 2h 3m`.
pub fn human_seconds(s: i64) -> String {
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    let mut parts = vec![];
    if d > 0 {
        parts.push(format!("{d}d"));
    }
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 && d == 0 {
        parts.push(format!("{m}m"));
    }
    if parts.is_empty() || (sec > 0 && d == 0 && h == 0 && m == 0) {
        parts.push(format!("{sec}s"));
    }
    parts.join(" ")
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

#[cfg(test)]
mod tests;
