//! What monitoring reads and writes: the latest task of every table, metric
//! history for anomaly detection, alert incidents and silences.

use std::collections::BTreeMap;

use sqlx::Row;

use crate::error::Ctx;
use crate::{CheckResult, Result, StateStore, TASK_COLUMNS, TaskRecord, task_from_row};

/// One alert incident: a condition of one rule about one subject, from the
/// moment it fires until it clears.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Incident {
    /// Unique id.
    pub id: String,
    /// The alert rule (`[alerts.NAME]`).
    pub rule: String,
    /// What fired: `task_failed`, `sla_missed`, `anomaly`, ….
    pub kind: String,
    /// What it is about (a table, a check, a product), unique per rule and kind.
    pub subject: String,
    /// `firing`, `resolved`, or `event` (a one-off, such as a schema change).
    pub status: String,
    /// One line for people.
    pub summary: String,
    /// Every field of the condition, as a JSON object.
    pub details: String,
    /// RFC 3339: when it first fired.
    pub opened_at: String,
    /// RFC 3339: when it was last sent (None while silenced or failing to send).
    pub last_sent_at: Option<String>,
    /// Notifications delivered for it.
    pub sends: i64,
    /// RFC 3339: when the condition cleared.
    pub resolved_at: Option<String>,
    /// The last delivery error, if the last delivery failed.
    pub last_error: Option<String>,
}

/// A rule whose notifications are held back until `until`.
#[derive(Debug, Clone, PartialEq)]
pub struct Silence {
    /// The alert rule.
    pub rule: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub until: String,
    /// Why, if given.
    pub reason: Option<String>,
}

/// When a table last received new rows, and the newest data timestamp it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct LastLoad {
    /// RFC 3339: the end of the last successful task that wrote rows.
    pub loaded_at: String,
    /// RFC 3339: the newest data timestamp recorded by any task, if any.
    pub data_time: Option<String>,
}

const INCIDENT_COLUMNS: &str = "id, rule, kind, subject, status, summary, details, opened_at, last_sent_at, sends, resolved_at, last_error";

fn incident_from_row(r: &sqlx::any::AnyRow) -> std::result::Result<Incident, sqlx::Error> {
    Ok(Incident {
        id: r.try_get(0)?,
        rule: r.try_get(1)?,
        kind: r.try_get(2)?,
        subject: r.try_get(3)?,
        status: r.try_get(4)?,
        summary: r.try_get(5)?,
        details: r.try_get(6)?,
        opened_at: r.try_get(7)?,
        last_sent_at: r.try_get(8)?,
        sends: r.try_get(9)?,
        resolved_at: r.try_get(10)?,
        last_error: r.try_get(11)?,
    })
}

impl StateStore {
    /// The latest finished task (`success`, `skipped` or `failed`) of every table.
    pub async fn latest_tasks(&self) -> Result<BTreeMap<String, TaskRecord>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM (SELECT t.*, ROW_NUMBER() OVER (PARTITION BY model ORDER BY ended_at DESC, run_id DESC) AS rn
             FROM tasks t WHERE ended_at IS NOT NULL AND status IN ('success', 'skipped', 'failed')) x WHERE rn = 1"
        );
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .ctx("read latest tasks")?;
        let tasks: Vec<TaskRecord> = rows
            .iter()
            .map(task_from_row)
            .collect::<std::result::Result<_, _>>()
            .ctx("read latest tasks")?;
        Ok(tasks.into_iter().map(|t| (t.model.clone(), t)).collect())
    }

    /// For every table, its last `per_model` successful tasks that did work
    /// (not skipped), newest first: the history anomaly detection learns from.
    pub async fn task_history(&self, per_model: i64) -> Result<BTreeMap<String, Vec<TaskRecord>>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM (SELECT t.*, ROW_NUMBER() OVER (PARTITION BY model ORDER BY ended_at DESC, run_id DESC) AS rn
             FROM tasks t WHERE ended_at IS NOT NULL AND status = 'success') x WHERE rn <= $1 ORDER BY model, ended_at DESC, run_id DESC"
        );
        let rows = sqlx::query(&sql)
            .bind(per_model)
            .fetch_all(&self.pool)
            .await
            .ctx("read task history")?;
        let mut out: BTreeMap<String, Vec<TaskRecord>> = BTreeMap::new();
        for r in &rows {
            let t = task_from_row(r).ctx("read task history")?;
            out.entry(t.model.clone()).or_default().push(t);
        }
        Ok(out)
    }

    /// When each table last received rows.
    pub async fn last_loads(&self) -> Result<BTreeMap<String, LastLoad>> {
        let rows = sqlx::query(
            "SELECT model, MAX(ended_at), MAX(data_time) FROM tasks
             WHERE status = 'success' AND rows_written > 0 AND ended_at IS NOT NULL GROUP BY model",
        )
        .fetch_all(&self.pool)
        .await
        .ctx("read last loads")?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>(0)?,
                    LastLoad {
                        loaded_at: r.try_get(1)?,
                        data_time: r.try_get(2)?,
                    },
                ))
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .ctx("read last loads")
    }

    /// The last `limit` finished tasks of one table (any status), oldest first.
    pub async fn model_tasks(&self, model: &str, limit: i64) -> Result<Vec<TaskRecord>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM (SELECT * FROM tasks WHERE model = $1 AND ended_at IS NOT NULL
             ORDER BY ended_at DESC, run_id DESC LIMIT $2) x ORDER BY ended_at, run_id"
        );
        let rows = sqlx::query(&sql)
            .bind(model)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("read a table's tasks")?;
        rows.iter()
            .map(task_from_row)
            .collect::<std::result::Result<_, _>>()
            .ctx("read a table's tasks")
    }

    /// Every task that ended at or after `since` (RFC 3339), oldest first.
    pub async fn tasks_since(&self, since: &str) -> Result<Vec<TaskRecord>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE ended_at >= $1 ORDER BY ended_at, task"
        );
        let rows = sqlx::query(&sql)
            .bind(since)
            .fetch_all(&self.pool)
            .await
            .ctx("read tasks")?;
        rows.iter()
            .map(task_from_row)
            .collect::<std::result::Result<_, _>>()
            .ctx("read tasks")
    }

    /// The newest result of every check of every model (for a partitioned
    /// model, of its newest interval).
    pub async fn latest_check_results(&self) -> Result<Vec<CheckResult>> {
        let rows = sqlx::query(
            "SELECT run_id, model, check_name, kind, severity, status, failing_rows, action, sample, checked_at, interval_start, interval_end
             FROM (SELECT c.*, ROW_NUMBER() OVER (PARTITION BY model, check_name ORDER BY checked_at DESC, interval_start DESC) AS rn FROM check_results c) x
             WHERE rn = 1 ORDER BY model, check_name",
        )
        .fetch_all(&self.pool)
        .await
        .ctx("read latest check results")?;
        rows.iter()
            .map(crate::check_from_row)
            .collect::<std::result::Result<_, sqlx::Error>>()
            .ctx("read latest check results")
    }

    /// Schema changes of every source recorded at or after `since`, oldest first.
    pub async fn schema_events_since(&self, since: &str) -> Result<Vec<crate::SchemaEvent>> {
        let rows = sqlx::query("SELECT source, change, column_name, column_type, file, run_id, at FROM schema_events WHERE at >= $1 ORDER BY at, source, column_name")
            .bind(since)
            .fetch_all(&self.pool)
            .await
            .ctx("read schema events")?;
        rows.iter()
            .map(crate::schema_event_from_row)
            .collect::<std::result::Result<_, sqlx::Error>>()
            .ctx("read schema events")
    }

    /// Incidents still firing, oldest first.
    pub async fn open_incidents(&self) -> Result<Vec<Incident>> {
        let sql = format!(
            "SELECT {INCIDENT_COLUMNS} FROM alert_incidents WHERE status = 'firing' ORDER BY opened_at, id"
        );
        self.query_incidents(&sql, None).await
    }

    /// The latest incidents of any status, newest first.
    pub async fn incidents(&self, limit: i64) -> Result<Vec<Incident>> {
        let sql = format!(
            "SELECT {INCIDENT_COLUMNS} FROM alert_incidents ORDER BY opened_at DESC, id DESC LIMIT $1"
        );
        self.query_incidents(&sql, Some(limit)).await
    }

    /// Whether an incident (of any status) exists for this rule and subject.
    pub async fn incident_exists(&self, rule: &str, subject: &str) -> Result<bool> {
        let row =
            sqlx::query("SELECT COUNT(*) FROM alert_incidents WHERE rule = $1 AND subject = $2")
                .bind(rule)
                .bind(subject)
                .fetch_one(&self.pool)
                .await
                .ctx("read incidents")?;
        Ok(row.try_get::<i64, _>(0).ctx("read incidents")? > 0)
    }

    async fn query_incidents(&self, sql: &str, limit: Option<i64>) -> Result<Vec<Incident>> {
        let mut q = sqlx::query(sql);
        if let Some(l) = limit {
            q = q.bind(l);
        }
        let rows = q.fetch_all(&self.pool).await.ctx("read incidents")?;
        rows.iter()
            .map(incident_from_row)
            .collect::<std::result::Result<_, _>>()
            .ctx("read incidents")
    }

    /// Inserts or updates an incident.
    pub async fn save_incident(&self, i: &Incident) -> Result<()> {
        sqlx::query(
            "INSERT INTO alert_incidents (id, rule, kind, subject, status, summary, details, opened_at, last_sent_at, sends, resolved_at, last_error)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, summary = excluded.summary, details = excluded.details,
               last_sent_at = excluded.last_sent_at, sends = excluded.sends, resolved_at = excluded.resolved_at,
               last_error = excluded.last_error",
        )
        .bind(&i.id)
        .bind(&i.rule)
        .bind(&i.kind)
        .bind(&i.subject)
        .bind(&i.status)
        .bind(&i.summary)
        .bind(&i.details)
        .bind(&i.opened_at)
        .bind(i.last_sent_at.clone())
        .bind(i.sends)
        .bind(i.resolved_at.clone())
        .bind(i.last_error.clone())
        .execute(&self.pool)
        .await
        .ctx("record incident")?;
        Ok(())
    }

    /// Silences `rule` from `created_at` until `until` (RFC 3339).
    pub async fn add_silence(&self, s: &Silence) -> Result<()> {
        sqlx::query("INSERT INTO alert_silences (rule, created_at, until_at, reason) VALUES ($1, $2, $3, $4)")
            .bind(&s.rule)
            .bind(&s.created_at)
            .bind(&s.until)
            .bind(s.reason.clone())
            .execute(&self.pool)
            .await
            .ctx("record silence")?;
        Ok(())
    }

    /// Silences in force at `now` (RFC 3339).
    pub async fn active_silences(&self, now: &str) -> Result<Vec<Silence>> {
        let rows = sqlx::query("SELECT rule, created_at, until_at, reason FROM alert_silences WHERE until_at > $1 AND created_at <= $1 ORDER BY rule, until_at")
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .ctx("read silences")?;
        rows.iter()
            .map(|r| {
                Ok(Silence {
                    rule: r.try_get(0)?,
                    created_at: r.try_get(1)?,
                    until: r.try_get(2)?,
                    reason: r.try_get(3)?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .ctx("read silences")
    }

    /// Ends every silence of `rule` at `now`; returns how many were in force.
    pub async fn end_silences(&self, rule: &str, now: &str) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE alert_silences SET until_at = $2 WHERE rule = $1 AND until_at > $2",
        )
        .bind(rule)
        .bind(now)
        .execute(&self.pool)
        .await
        .ctx("end silences")?;
        Ok(r.rows_affected())
    }
}

/// Everything a table's tasks have done, summed over the store's history.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskTotals {
    /// Tasks by final status (`success`, `skipped`, `failed`, …).
    pub by_status: BTreeMap<String, i64>,
    /// Rows read.
    pub rows_read: i64,
    /// Rows written.
    pub rows_written: i64,
    /// Rows quarantined.
    pub rows_quarantined: i64,
    /// Rows dropped.
    pub rows_dropped: i64,
    /// Bytes read.
    pub bytes_read: i64,
    /// Bytes written.
    pub bytes_written: i64,
    /// CPU milliseconds.
    pub cpu_ms: i64,
}

impl StateStore {
    /// Per table, the totals of all its tasks.
    pub async fn task_totals(&self) -> Result<BTreeMap<String, TaskTotals>> {
        let rows = sqlx::query(
            "SELECT model, status, COUNT(*), CAST(SUM(rows_read) AS BIGINT), CAST(SUM(rows_written) AS BIGINT),
               CAST(SUM(rows_quarantined) AS BIGINT), CAST(SUM(rows_dropped) AS BIGINT),
               CAST(SUM(bytes_read) AS BIGINT), CAST(SUM(bytes_written) AS BIGINT), CAST(SUM(cpu_ms) AS BIGINT)
             FROM tasks WHERE model IS NOT NULL GROUP BY model, status",
        )
        .fetch_all(&self.pool)
        .await
        .ctx("read task totals")?;
        let mut out: BTreeMap<String, TaskTotals> = BTreeMap::new();
        for r in &rows {
            let get = |i: usize| r.try_get::<i64, _>(i);
            let model: String = r.try_get(0).ctx("read task totals")?;
            let status: String = r.try_get(1).ctx("read task totals")?;
            let t = out.entry(model).or_default();
            *t.by_status.entry(status).or_default() += get(2).ctx("read task totals")?;
            t.rows_read += get(3).ctx("read task totals")?;
            t.rows_written += get(4).ctx("read task totals")?;
            t.rows_quarantined += get(5).ctx("read task totals")?;
            t.rows_dropped += get(6).ctx("read task totals")?;
            t.bytes_read += get(7).ctx("read task totals")?;
            t.bytes_written += get(8).ctx("read task totals")?;
            t.cpu_ms += get(9).ctx("read task totals")?;
        }
        Ok(out)
    }

    /// Runs by status.
    pub async fn run_counts(&self) -> Result<BTreeMap<String, i64>> {
        let rows = sqlx::query("SELECT status, COUNT(*) FROM runs GROUP BY status")
            .fetch_all(&self.pool)
            .await
            .ctx("count runs")?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .ctx("count runs")
    }
}
