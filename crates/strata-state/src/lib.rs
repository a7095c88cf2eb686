//! The state store: runs, tasks, the ingest manifest (which files each source
//! has loaded, with row accounting per file) and per-model state (fingerprint
//! and the upstream Delta versions consumed), on SQLite or PostgreSQL.
//!
//! Links no query engine. Timestamps are stored as RFC 3339 text and ids are
//! made by the caller, so one schema serves both backends.
//!
//! ```no_run
//! # async fn f() -> strata_state::Result<()> {
//! let store = strata_state::StateStore::open("sqlite:///tmp/state.db").await?;
//! for run in store.runs(10).await? { println!("{} {}", run.run_id, run.status); }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod deployments;
mod error;
mod intervals;
mod migrations;
mod monitor;
mod schedules;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::collections::{BTreeMap, HashSet};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

pub use deployments::{DeployedColumn, Deployment};
use error::Ctx;
pub use error::{Error, Result};
pub use intervals::IntervalRecord;
pub use monitor::{Incident, LastLoad, Silence, TaskTotals};
pub use schedules::TickRecord;

/// A run as recorded.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunRecord {
    /// Run id.
    pub run_id: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339, when finished.
    pub ended_at: Option<String>,
    /// `running`, `success`, `failed`, `interrupted`.
    pub status: String,
    /// The selection expression (empty: everything).
    pub selection: String,
    /// Whether `--full-refresh` was given.
    pub full_refresh: bool,
    /// What started it (`cli`, `schedule:NAME`, …).
    pub trigger: String,
    /// The interrupted or failed run this one resumed.
    pub resumed_from: Option<String>,
    /// The data interval `[start, end)` the run covered, RFC 3339.
    pub interval: Option<(String, String)>,
}

/// One task of a run.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct TaskRecord {
    /// Run id.
    pub run_id: String,
    /// The table the task writes (`silver.orders`).
    pub task: String,
    /// `ingest` or the materialization.
    pub kind: String,
    /// `pending`, `running`, `success`, `skipped`, `failed`, `upstream_failed`.
    pub status: String,
    /// RFC 3339.
    pub started_at: Option<String>,
    /// RFC 3339.
    pub ended_at: Option<String>,
    /// Rows read from inputs (only new rows for incremental work).
    pub rows_read: i64,
    /// Rows written to the table.
    pub rows_written: i64,
    /// Rows sent to quarantine.
    pub rows_quarantined: i64,
    /// The table's Delta version after the task, if it wrote one.
    pub delta_version: Option<i64>,
    /// A note for people (why skipped, what changed).
    pub message: Option<String>,
    /// The error, when failed.
    pub error: Option<String>,
    /// Attempts made (1 unless retried).
    pub attempts: i64,
    /// The table the task wrote (the task name without an interval suffix).
    pub model: String,
    /// CPU time the process spent on the task, in milliseconds (time shared
    /// with tasks running at the same moment is split evenly between them).
    pub cpu_ms: i64,
    /// Bytes read: input files for an ingest, the input tables' data files for a model.
    pub bytes_read: i64,
    /// Bytes of data files the task's commit added.
    pub bytes_written: i64,
    /// Rows dropped by `on_fail = "drop"` expectations.
    pub rows_dropped: i64,
    /// The most memory the task's query operators (hash tables, aggregates,
    /// sorts) held at once, in bytes; 0 when not measured.
    pub peak_memory: i64,
    /// Rows in the table after the task, when known (after a task that
    /// rewrote the whole table).
    pub table_rows: Option<i64>,
    /// The newest data timestamp in the table after the task (RFC 3339), when
    /// the table has a time column.
    pub data_time: Option<String>,
}

impl TaskRecord {
    /// Wall time from start to end, when both are known.
    pub fn duration(&self) -> Option<chrono::Duration> {
        let start = chrono::DateTime::parse_from_rfc3339(self.started_at.as_deref()?).ok()?;
        let end = chrono::DateTime::parse_from_rfc3339(self.ended_at.as_deref()?).ok()?;
        Some(end - start)
    }
}

/// One file ingested as part of a batch, with its row accounting.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestedFile {
    /// Source name.
    pub source: String,
    /// Batch id (also written to bronze as `_batch_id`).
    pub batch_id: String,
    /// The file's path or URL.
    pub file: String,
    /// Size in bytes when read.
    pub size_bytes: i64,
    /// Modification time when read (RFC 3339).
    pub modified: String,
    /// Rows read = loaded + quarantined + dropped.
    pub rows_read: i64,
    /// Rows appended to bronze.
    pub rows_loaded: i64,
    /// Rows kept in the quarantine table.
    pub rows_quarantined: i64,
    /// Rows dropped by an explicit rule.
    pub rows_dropped: i64,
    /// Delta version of the bronze commit.
    pub delta_version: Option<i64>,
    /// The run that ingested it.
    pub run_id: String,
    /// RFC 3339.
    pub ingested_at: String,
}

/// What a model was last built from.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelState {
    /// Qualified model name.
    pub model: String,
    /// Fingerprint of the SQL and config it was built with.
    pub fingerprint: String,
    /// The Delta version of each upstream table it has consumed.
    pub upstream_versions: BTreeMap<String, i64>,
    /// Its own Delta version after the build.
    pub delta_version: Option<i64>,
    /// RFC 3339.
    pub built_at: String,
    /// The run that built it.
    pub run_id: String,
}

/// The result of one check (or per-row expectation) on one model.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct CheckResult {
    /// The run (or `strata check` invocation) that ran it.
    pub run_id: String,
    /// The model checked.
    pub model: String,
    /// The check's name.
    pub check_name: String,
    /// `table` (a check) or `row` (a per-row expectation).
    pub kind: String,
    /// `error` or `warn` (for expectations: the `on_fail` action).
    pub severity: String,
    /// `pass`, `warn` or `fail`.
    pub status: String,
    /// Rows (or keys) violating the rule.
    pub failing_rows: i64,
    /// What was done with violating rows (`dropped`, `quarantined`), if anything.
    pub action: Option<String>,
    /// Up to five violating rows, as a JSON array.
    pub sample: String,
    /// RFC 3339.
    pub checked_at: String,
    /// The data interval checked `[start, end)` (RFC 3339), when the check ran
    /// on one interval of a partitioned model rather than the whole table.
    pub interval: Option<(String, String)>,
}

/// Which database backs the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// A connection pool to the state store, migrated to the current schema.
#[derive(Debug, Clone)]
pub struct StateStore {
    pool: AnyPool,
    backend: Backend,
}

impl StateStore {
    /// Opens (creating if needed) and migrates the store at `url`.
    pub async fn open(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let (backend, conn_url) = if let Some(path) = url.strip_prefix("sqlite://") {
            if let Some(parent) = std::path::Path::new(path).parent() {
                std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                    path: parent.display().to_string(),
                    source,
                })?;
            }
            (Backend::Sqlite, format!("sqlite://{path}?mode=rwc"))
        } else {
            (Backend::Postgres, url.to_string())
        };
        let shown = redact(url);
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 1 } else { 8 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        // In WAL mode this survives any process crash (kill -9);
                        // only an OS crash may lose the last commits, and what
                        // must survive that lives in the Delta log anyway.
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&conn_url)
            .await
            .map_err(|source| Error::Open {
                url: shown.clone(),
                source,
            })?;
        let store = Self { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::query("CREATE TABLE IF NOT EXISTS strata_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)")
            .execute(&self.pool)
            .await
            .ctx("create migrations table")?;
        let done: HashSet<i64> = sqlx::query("SELECT version FROM strata_migrations")
            .fetch_all(&self.pool)
            .await
            .ctx("read migrations")?
            .iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<std::result::Result<_, _>>()
            .ctx("read migrations")?;
        for (version, description, statements) in migrations::MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            let mut tx = self.pool.begin().await.ctx("begin migration")?;
            for s in *statements {
                sqlx::query(s).execute(&mut *tx).await.ctx("migrate")?;
            }
            sqlx::query("INSERT INTO strata_migrations (version, description, applied_at) VALUES ($1, $2, $3)")
                .bind(*version)
                .bind(*description)
                .bind(now())
                .execute(&mut *tx)
                .await
                .ctx("record migration")?;
            tx.commit().await.ctx("commit migration")?;
        }
        Ok(())
    }

    /// Records a new run.
    pub async fn create_run(&self, run: &RunRecord) -> Result<()> {
        sqlx::query("INSERT INTO runs (run_id, started_at, ended_at, status, selection, full_refresh, trigger_kind, resumed_from, interval_start, interval_end) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
            .bind(&run.run_id)
            .bind(&run.started_at)
            .bind(run.ended_at.clone())
            .bind(&run.status)
            .bind(&run.selection)
            .bind(i64::from(run.full_refresh))
            .bind(&run.trigger)
            .bind(run.resumed_from.clone())
            .bind(run.interval.as_ref().map(|i| i.0.clone()))
            .bind(run.interval.as_ref().map(|i| i.1.clone()))
            .execute(&self.pool)
            .await
            .ctx("create run")?;
        Ok(())
    }

    /// Sets a run's final status and end time.
    pub async fn finish_run(&self, run_id: &str, status: &str, ended_at: &str) -> Result<()> {
        sqlx::query("UPDATE runs SET status = $1, ended_at = $2 WHERE run_id = $3")
            .bind(status)
            .bind(ended_at)
            .bind(run_id)
            .execute(&self.pool)
            .await
            .ctx("finish run")?;
        Ok(())
    }

    /// Marks runs still `running` as `interrupted` (their process died); returns their ids.
    pub async fn mark_interrupted(&self, except_run: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT run_id FROM runs WHERE status = 'running' AND run_id <> $1")
            .bind(except_run)
            .fetch_all(&self.pool)
            .await
            .ctx("find interrupted runs")?;
        let ids: Vec<String> = rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>(0).ok())
            .collect();
        for id in &ids {
            sqlx::query("UPDATE runs SET status = 'interrupted' WHERE run_id = $1")
                .bind(id)
                .execute(&self.pool)
                .await
                .ctx("mark interrupted")?;
            sqlx::query("UPDATE tasks SET status = 'interrupted' WHERE run_id = $1 AND status IN ('running', 'pending')")
                .bind(id)
                .execute(&self.pool)
                .await
                .ctx("mark interrupted")?;
        }
        Ok(ids)
    }

    /// The latest runs, newest first.
    pub async fn runs(&self, limit: i64) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query("SELECT run_id, started_at, ended_at, status, selection, full_refresh, trigger_kind, resumed_from, interval_start, interval_end FROM runs ORDER BY started_at DESC, run_id DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("list runs")?;
        rows.iter()
            .map(run_from_row)
            .collect::<std::result::Result<_, _>>()
            .ctx("read runs")
    }

    /// One run.
    pub async fn run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        let row = sqlx::query("SELECT run_id, started_at, ended_at, status, selection, full_refresh, trigger_kind, resumed_from, interval_start, interval_end FROM runs WHERE run_id = $1")
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await
            .ctx("read run")?;
        row.as_ref().map(run_from_row).transpose().ctx("read run")
    }

    /// Inserts or replaces a task's record.
    pub async fn upsert_task(&self, t: &TaskRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO tasks (run_id, task, kind, status, started_at, ended_at, rows_read, rows_written, rows_quarantined, delta_version, message, error, attempts,
               model, cpu_ms, bytes_read, bytes_written, rows_dropped, table_rows, data_time, peak_memory)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
             ON CONFLICT (run_id, task) DO UPDATE SET kind = excluded.kind, status = excluded.status,
               started_at = excluded.started_at, ended_at = excluded.ended_at, rows_read = excluded.rows_read,
               rows_written = excluded.rows_written, rows_quarantined = excluded.rows_quarantined,
               delta_version = excluded.delta_version, message = excluded.message, error = excluded.error,
               attempts = excluded.attempts, model = excluded.model, cpu_ms = excluded.cpu_ms,
               bytes_read = excluded.bytes_read, bytes_written = excluded.bytes_written,
               rows_dropped = excluded.rows_dropped, table_rows = excluded.table_rows, data_time = excluded.data_time,
               peak_memory = excluded.peak_memory",
        )
        .bind(&t.run_id)
        .bind(&t.task)
        .bind(&t.kind)
        .bind(&t.status)
        .bind(t.started_at.clone())
        .bind(t.ended_at.clone())
        .bind(t.rows_read)
        .bind(t.rows_written)
        .bind(t.rows_quarantined)
        .bind(t.delta_version)
        .bind(t.message.clone())
        .bind(t.error.clone())
        .bind(t.attempts)
        .bind(if t.model.is_empty() {
            model_of_task(&t.task).to_string()
        } else {
            t.model.clone()
        })
        .bind(t.cpu_ms)
        .bind(t.bytes_read)
        .bind(t.bytes_written)
        .bind(t.rows_dropped)
        .bind(t.table_rows)
        .bind(t.data_time.clone())
        .bind(t.peak_memory)
        .execute(&self.pool)
        .await
        .ctx("record task")?;
        Ok(())
    }

    /// A run's tasks, in the order they started.
    pub async fn tasks(&self, run_id: &str) -> Result<Vec<TaskRecord>> {
        let sql =
            format!("SELECT {TASK_COLUMNS} FROM tasks WHERE run_id = $1 ORDER BY started_at, task");
        let rows = sqlx::query(&sql)
            .bind(run_id)
            .fetch_all(&self.pool)
            .await
            .ctx("list tasks")?;
        rows.iter()
            .map(task_from_row)
            .collect::<std::result::Result<_, sqlx::Error>>()
            .ctx("read tasks")
    }

    /// Each table's peak query memory (bytes) in its latest successful task
    /// that measured one: what the runner expects its next build to need.
    pub async fn peak_memory_by_model(&self) -> Result<BTreeMap<String, i64>> {
        let rows = sqlx::query(
            "SELECT t.model, CAST(MAX(t.peak_memory) AS BIGINT) FROM tasks t
             JOIN (SELECT model, MAX(ended_at) AS at FROM tasks
                   WHERE status = 'success' AND peak_memory > 0 GROUP BY model) l
               ON t.model = l.model AND t.ended_at = l.at
             WHERE t.status = 'success' AND t.peak_memory > 0
             GROUP BY t.model",
        )
        .fetch_all(&self.pool)
        .await
        .ctx("read peak memory")?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .ctx("read peak memory")
    }

    /// The files a source has already ingested.
    pub async fn ingested_files(&self, source: &str) -> Result<HashSet<String>> {
        let rows = sqlx::query("SELECT DISTINCT file FROM ingested_files WHERE source = $1")
            .bind(source)
            .fetch_all(&self.pool)
            .await
            .ctx("read manifest")?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<std::result::Result<_, _>>()
            .ctx("read manifest")
    }

    /// Records the files of one committed batch, all at once.
    pub async fn record_files(&self, files: &[IngestedFile]) -> Result<()> {
        let mut tx = self.pool.begin().await.ctx("begin manifest")?;
        for f in files {
            sqlx::query(
                "INSERT INTO ingested_files (source, batch_id, file, size_bytes, modified, rows_read, rows_loaded, rows_quarantined, rows_dropped, delta_version, run_id, ingested_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (source, batch_id, file) DO NOTHING",
            )
            .bind(&f.source)
            .bind(&f.batch_id)
            .bind(&f.file)
            .bind(f.size_bytes)
            .bind(&f.modified)
            .bind(f.rows_read)
            .bind(f.rows_loaded)
            .bind(f.rows_quarantined)
            .bind(f.rows_dropped)
            .bind(f.delta_version)
            .bind(&f.run_id)
            .bind(&f.ingested_at)
            .execute(&mut *tx)
            .await
            .ctx("record manifest")?;
        }
        tx.commit().await.ctx("commit manifest")?;
        Ok(())
    }

    /// Every file a source has ingested, oldest first.
    pub async fn files_of(&self, source: &str) -> Result<Vec<IngestedFile>> {
        let rows = sqlx::query("SELECT source, batch_id, file, size_bytes, modified, rows_read, rows_loaded, rows_quarantined, rows_dropped, delta_version, run_id, ingested_at FROM ingested_files WHERE source = $1 ORDER BY ingested_at, file")
            .bind(source)
            .fetch_all(&self.pool)
            .await
            .ctx("list manifest")?;
        rows.iter()
            .map(|r| {
                Ok(IngestedFile {
                    source: r.try_get(0)?,
                    batch_id: r.try_get(1)?,
                    file: r.try_get(2)?,
                    size_bytes: r.try_get(3)?,
                    modified: r.try_get(4)?,
                    rows_read: r.try_get(5)?,
                    rows_loaded: r.try_get(6)?,
                    rows_quarantined: r.try_get(7)?,
                    rows_dropped: r.try_get(8)?,
                    delta_version: r.try_get(9)?,
                    run_id: r.try_get(10)?,
                    ingested_at: r.try_get(11)?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .ctx("read manifest")
    }

    /// What a model was last built from, if it was built.
    pub async fn model_state(&self, model: &str) -> Result<Option<ModelState>> {
        let row = sqlx::query("SELECT model, fingerprint, upstream_versions, delta_version, built_at, run_id FROM model_state WHERE model = $1")
            .bind(model)
            .fetch_optional(&self.pool)
            .await
            .ctx("read model state")?;
        let Some(r) = row else { return Ok(None) };
        let versions: String = r.try_get(2).ctx("read model state")?;
        let upstream_versions = serde_json::from_str(&versions).map_err(|e| Error::Corrupt {
            what: "model_state.upstream_versions",
            detail: e.to_string(),
        })?;
        Ok(Some(ModelState {
            model: r.try_get(0).ctx("read model state")?,
            fingerprint: r.try_get(1).ctx("read model state")?,
            upstream_versions,
            delta_version: r.try_get(3).ctx("read model state")?,
            built_at: r.try_get(4).ctx("read model state")?,
            run_id: r.try_get(5).ctx("read model state")?,
        }))
    }

    /// Records what a model was just built from.
    pub async fn set_model_state(&self, s: &ModelState) -> Result<()> {
        let versions = serde_json::to_string(&s.upstream_versions).map_err(|e| Error::Corrupt {
            what: "model_state.upstream_versions",
            detail: e.to_string(),
        })?;
        sqlx::query(
            "INSERT INTO model_state (model, fingerprint, upstream_versions, delta_version, built_at, run_id) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (model) DO UPDATE SET fingerprint = excluded.fingerprint, upstream_versions = excluded.upstream_versions,
               delta_version = excluded.delta_version, built_at = excluded.built_at, run_id = excluded.run_id",
        )
        .bind(&s.model)
        .bind(&s.fingerprint)
        .bind(versions)
        .bind(s.delta_version)
        .bind(&s.built_at)
        .bind(&s.run_id)
        .execute(&self.pool)
        .await
        .ctx("record model state")?;
        Ok(())
    }

    /// Forgets a model's state (e.g. before a full refresh).
    pub async fn clear_model_state(&self, model: &str) -> Result<()> {
        sqlx::query("DELETE FROM model_state WHERE model = $1")
            .bind(model)
            .execute(&self.pool)
            .await
            .ctx("clear model state")?;
        Ok(())
    }
}

/// A change in a source's columns, seen while ingesting.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SchemaEvent {
    /// The source.
    pub source: String,
    /// `column_added` (added to bronze) or `column_missing` (a file lacked it).
    pub change: String,
    /// The column.
    pub column: String,
    /// Its type, when added.
    pub column_type: String,
    /// The file (or database) it was seen in.
    pub file: String,
    /// The run.
    pub run_id: String,
    /// RFC 3339.
    pub at: String,
}

/// Who holds the run lock.
#[derive(Debug, Clone, PartialEq)]
pub struct LockHolder {
    /// The run holding it.
    pub run_id: String,
    /// Host of the process.
    pub host: String,
    /// Process id.
    pub pid: i64,
    /// RFC 3339.
    pub acquired_at: String,
    /// RFC 3339: the holder's last sign of life (refreshed while it runs).
    pub heartbeat_at: String,
}

impl StateStore {
    /// Takes the project's run lock for `me`. A holder that `alive` says is dead
    /// is replaced (its run is returned so it can be marked interrupted); a live
    /// one is returned as the error.
    pub async fn acquire_run_lock(
        &self,
        me: &LockHolder,
        alive: impl Fn(&LockHolder) -> bool,
    ) -> Result<std::result::Result<Option<String>, LockHolder>> {
        let mut replaced = None;
        for _ in 0..3 {
            let inserted = sqlx::query(
                "INSERT INTO run_lock (name, run_id, host, pid, acquired_at, heartbeat_at) VALUES ('run', $1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
            )
            .bind(&me.run_id)
            .bind(&me.host)
            .bind(me.pid)
            .bind(&me.acquired_at)
            .bind(&me.heartbeat_at)
            .execute(&self.pool)
            .await
            .ctx("take the run lock")?
            .rows_affected();
            if inserted == 1 {
                return Ok(Ok(replaced));
            }
            let row = sqlx::query(
                "SELECT run_id, host, pid, acquired_at, COALESCE(heartbeat_at, acquired_at) FROM run_lock WHERE name = 'run'",
            )
            .fetch_optional(&self.pool)
            .await
            .ctx("read the run lock")?;
            let Some(r) = row else { continue };
            let holder = LockHolder {
                run_id: r.try_get(0).ctx("read the run lock")?,
                host: r.try_get(1).ctx("read the run lock")?,
                pid: r.try_get(2).ctx("read the run lock")?,
                acquired_at: r.try_get(3).ctx("read the run lock")?,
                heartbeat_at: r.try_get(4).ctx("read the run lock")?,
            };
            if alive(&holder) {
                return Ok(Err(holder));
            }
            // Compare-and-delete: only the dead holder's row goes.
            sqlx::query("DELETE FROM run_lock WHERE name = 'run' AND run_id = $1")
                .bind(&holder.run_id)
                .execute(&self.pool)
                .await
                .ctx("replace a dead run's lock")?;
            replaced = Some(holder.run_id);
        }
        Err(Error::Corrupt {
            what: "run_lock",
            detail: "the run lock kept changing hands".into(),
        })
    }

    /// Records a cursor source's watermark after a committed batch (a copy of
    /// what the bronze commit carries, for display and monitoring).
    pub async fn set_watermark(&self, source: &str, watermark: &str, run_id: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO watermarks (source, watermark, run_id, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (source) DO UPDATE SET watermark = excluded.watermark, run_id = excluded.run_id, updated_at = excluded.updated_at",
        )
        .bind(source)
        .bind(watermark)
        .bind(run_id)
        .bind(now())
        .execute(&self.pool)
        .await
        .ctx("record watermark")?;
        Ok(())
    }

    /// A cursor source's last recorded watermark.
    pub async fn watermark(&self, source: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT watermark FROM watermarks WHERE source = $1")
            .bind(source)
            .fetch_optional(&self.pool)
            .await
            .ctx("read watermark")?;
        row.map(|r| r.try_get(0)).transpose().ctx("read watermark")
    }

    /// Replaces the stored data products with `products` (name, definition as
    /// JSON), as deployed by a successful run.
    pub async fn save_products(&self, products: &[(String, String)], run_id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await.ctx("begin products")?;
        sqlx::query("DELETE FROM products")
            .execute(&mut *tx)
            .await
            .ctx("replace products")?;
        for (name, definition) in products {
            sqlx::query("INSERT INTO products (name, definition, run_id, updated_at) VALUES ($1, $2, $3, $4)")
                .bind(name)
                .bind(definition)
                .bind(run_id)
                .bind(now())
                .execute(&mut *tx)
                .await
                .ctx("record product")?;
        }
        tx.commit().await.ctx("commit products")?;
        Ok(())
    }

    /// The stored data products: (name, definition as JSON), by name.
    pub async fn products(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT name, definition FROM products ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .ctx("read products")?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .ctx("read products")
    }

    /// Records schema changes of sources.
    pub async fn record_schema_events(&self, events: &[SchemaEvent]) -> Result<()> {
        let mut tx = self.pool.begin().await.ctx("begin schema events")?;
        for e in events {
            sqlx::query("INSERT INTO schema_events (source, change, column_name, column_type, file, run_id, at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(&e.source)
                .bind(&e.change)
                .bind(&e.column)
                .bind(&e.column_type)
                .bind(&e.file)
                .bind(&e.run_id)
                .bind(&e.at)
                .execute(&mut *tx)
                .await
                .ctx("record schema event")?;
        }
        tx.commit().await.ctx("commit schema events")?;
        Ok(())
    }

    /// A source's schema changes, newest first.
    pub async fn schema_events(&self, source: &str) -> Result<Vec<SchemaEvent>> {
        let rows = sqlx::query("SELECT source, change, column_name, column_type, file, run_id, at FROM schema_events WHERE source = $1 ORDER BY at DESC, column_name")
            .bind(source)
            .fetch_all(&self.pool)
            .await
            .ctx("read schema events")?;
        rows.iter()
            .map(schema_event_from_row)
            .collect::<std::result::Result<_, sqlx::Error>>()
            .ctx("read schema events")
    }

    /// Refreshes the lock holder's sign of life, if `run_id` still holds it.
    pub async fn heartbeat(&self, run_id: &str, now: &str) -> Result<()> {
        sqlx::query("UPDATE run_lock SET heartbeat_at = $2 WHERE name = 'run' AND run_id = $1")
            .bind(run_id)
            .bind(now)
            .execute(&self.pool)
            .await
            .ctx("refresh the run lock")?;
        Ok(())
    }

    /// Releases the run lock if `run_id` holds it.
    pub async fn release_run_lock(&self, run_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM run_lock WHERE name = 'run' AND run_id = $1")
            .bind(run_id)
            .execute(&self.pool)
            .await
            .ctx("release the run lock")?;
        Ok(())
    }

    /// Records check results (replacing earlier results of the same run, model and check).
    pub async fn record_checks(&self, results: &[CheckResult]) -> Result<()> {
        let mut tx = self.pool.begin().await.ctx("begin check results")?;
        for r in results {
            sqlx::query(
                "INSERT INTO check_results (run_id, model, check_name, kind, severity, status, failing_rows, action, sample, checked_at, interval_start, interval_end)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT (run_id, model, check_name, interval_start) DO UPDATE SET interval_end = excluded.interval_end, kind = excluded.kind, severity = excluded.severity,
                   status = excluded.status, failing_rows = excluded.failing_rows, action = excluded.action,
                   sample = excluded.sample, checked_at = excluded.checked_at",
            )
            .bind(&r.run_id)
            .bind(&r.model)
            .bind(&r.check_name)
            .bind(&r.kind)
            .bind(&r.severity)
            .bind(&r.status)
            .bind(r.failing_rows)
            .bind(r.action.clone())
            .bind(&r.sample)
            .bind(&r.checked_at)
            .bind(r.interval.as_ref().map(|i| i.0.clone()).unwrap_or_default())
            .bind(r.interval.as_ref().map(|i| i.1.clone()).unwrap_or_default())
            .execute(&mut *tx)
            .await
            .ctx("record check result")?;
        }
        tx.commit().await.ctx("commit check results")?;
        Ok(())
    }

    /// The check results of one run, by model then check.
    pub async fn check_results(&self, run_id: &str) -> Result<Vec<CheckResult>> {
        self.query_checks("SELECT run_id, model, check_name, kind, severity, status, failing_rows, action, sample, checked_at, interval_start, interval_end FROM check_results WHERE run_id = $1 ORDER BY model, checked_at, interval_start, check_name", run_id).await
    }

    /// A model's check history, newest first.
    pub async fn check_history(&self, model: &str) -> Result<Vec<CheckResult>> {
        self.query_checks("SELECT run_id, model, check_name, kind, severity, status, failing_rows, action, sample, checked_at, interval_start, interval_end FROM check_results WHERE model = $1 ORDER BY checked_at DESC, interval_start DESC, check_name", model).await
    }

    async fn query_checks(&self, sql: &str, arg: &str) -> Result<Vec<CheckResult>> {
        let rows = sqlx::query(sql)
            .bind(arg)
            .fetch_all(&self.pool)
            .await
            .ctx("read check results")?;
        rows.iter()
            .map(check_from_row)
            .collect::<std::result::Result<_, sqlx::Error>>()
            .ctx("read check results")
    }
}

/// Reads `source, change, column_name, column_type, file, run_id, at`.
pub(crate) fn schema_event_from_row(r: &AnyRow) -> std::result::Result<SchemaEvent, sqlx::Error> {
    Ok(SchemaEvent {
        source: r.try_get(0)?,
        change: r.try_get(1)?,
        column: r.try_get(2)?,
        column_type: r.try_get(3)?,
        file: r.try_get(4)?,
        run_id: r.try_get(5)?,
        at: r.try_get(6)?,
    })
}

/// Reads `run_id, model, check_name, kind, severity, status, failing_rows,
/// action, sample, checked_at, interval_start, interval_end`.
pub(crate) fn check_from_row(r: &AnyRow) -> std::result::Result<CheckResult, sqlx::Error> {
    Ok(CheckResult {
        run_id: r.try_get(0)?,
        model: r.try_get(1)?,
        check_name: r.try_get(2)?,
        kind: r.try_get(3)?,
        severity: r.try_get(4)?,
        status: r.try_get(5)?,
        failing_rows: r.try_get(6)?,
        action: r.try_get(7)?,
        sample: r.try_get(8)?,
        checked_at: r.try_get(9)?,
        interval: match (r.try_get::<String, _>(10)?, r.try_get::<String, _>(11)?) {
            (a, b) if !a.is_empty() => Some((a, b)),
            _ => None,
        },
    })
}

/// The columns [`task_from_row`] reads, in order.
pub(crate) const TASK_COLUMNS: &str = "run_id, task, kind, status, started_at, ended_at, rows_read, rows_written, rows_quarantined, delta_version, message, error, attempts, model, cpu_ms, bytes_read, bytes_written, rows_dropped, table_rows, data_time, peak_memory";

pub(crate) fn task_from_row(r: &AnyRow) -> std::result::Result<TaskRecord, sqlx::Error> {
    Ok(TaskRecord {
        run_id: r.try_get(0)?,
        task: r.try_get(1)?,
        kind: r.try_get(2)?,
        status: r.try_get(3)?,
        started_at: r.try_get(4)?,
        ended_at: r.try_get(5)?,
        rows_read: r.try_get(6)?,
        rows_written: r.try_get(7)?,
        rows_quarantined: r.try_get(8)?,
        delta_version: r.try_get(9)?,
        message: r.try_get(10)?,
        error: r.try_get(11)?,
        attempts: r.try_get(12)?,
        model: r.try_get::<Option<String>, _>(13)?.unwrap_or_default(),
        cpu_ms: r.try_get(14)?,
        bytes_read: r.try_get(15)?,
        bytes_written: r.try_get(16)?,
        rows_dropped: r.try_get(17)?,
        table_rows: r.try_get(18)?,
        data_time: r.try_get(19)?,
        peak_memory: r.try_get(20)?,
    })
}

/// The table a task writes: its name without an interval suffix
/// (`silver.events[2024-01-01]` → `silver.events`).
pub fn model_of_task(task: &str) -> &str {
    task.split_once('[').map(|(m, _)| m).unwrap_or(task)
}

fn run_from_row(r: &AnyRow) -> std::result::Result<RunRecord, sqlx::Error> {
    Ok(RunRecord {
        run_id: r.try_get(0)?,
        started_at: r.try_get(1)?,
        ended_at: r.try_get(2)?,
        status: r.try_get(3)?,
        selection: r.try_get(4)?,
        full_refresh: r.try_get::<i64, _>(5)? != 0,
        trigger: r.try_get(6)?,
        resumed_from: r.try_get(7)?,
        interval: match (
            r.try_get::<Option<String>, _>(8)?,
            r.try_get::<Option<String>, _>(9)?,
        ) {
            (Some(a), Some(b)) => Some((a, b)),
            _ => None,
        },
    })
}

/// The current time as RFC 3339 (UTC, microseconds).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The URL with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests;
