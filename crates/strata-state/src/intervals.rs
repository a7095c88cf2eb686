//! Data intervals of partitioned models: which are done, failed or got late data.

use sqlx::Row;

use crate::StateStore;
use crate::error::{Ctx, Result};

/// The last outcome of one data interval of one partitioned model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IntervalRecord {
    /// Qualified model name.
    pub model: String,
    /// Inclusive start, RFC 3339 (UTC, microseconds: sorts as text).
    pub start: String,
    /// Exclusive end, RFC 3339.
    pub end: String,
    /// `done`, `failed`, or `late` (done, and a later run found rows that
    /// arrived after the interval was first built).
    pub status: String,
    /// Rows the interval holds after its last successful build.
    pub rows: Option<i64>,
    /// The run that last touched it.
    pub run_id: String,
    /// RFC 3339.
    pub updated_at: String,
    /// The error of the last failed attempt.
    pub error: Option<String>,
    /// Builds of this interval so far.
    pub attempts: i64,
}

impl StateStore {
    /// Records interval outcomes (inserting or replacing by model and start;
    /// `attempts` counts up), all in one transaction.
    pub async fn record_intervals(&self, records: &[IntervalRecord]) -> Result<()> {
        let mut tx = self.pool.begin().await.ctx("begin intervals")?;
        for r in records {
            sqlx::query(
                "INSERT INTO intervals (model, interval_start, interval_end, status, rows_written, run_id, updated_at, error, attempts)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1)
                 ON CONFLICT (model, interval_start) DO UPDATE SET interval_end = excluded.interval_end,
                   status = excluded.status, rows_written = COALESCE(excluded.rows_written, intervals.rows_written),
                   run_id = excluded.run_id, updated_at = excluded.updated_at, error = excluded.error,
                   attempts = intervals.attempts + 1",
            )
            .bind(&r.model)
            .bind(&r.start)
            .bind(&r.end)
            .bind(&r.status)
            .bind(r.rows)
            .bind(&r.run_id)
            .bind(&r.updated_at)
            .bind(r.error.clone())
            .execute(&mut *tx)
            .await
            .ctx("record interval")?;
        }
        tx.commit().await.ctx("commit intervals")?;
        Ok(())
    }

    /// Every recorded interval of `model`, oldest first.
    pub async fn intervals(&self, model: &str) -> Result<Vec<IntervalRecord>> {
        self.intervals_in(model, "", "~").await
    }

    /// The recorded intervals of `model` starting in `[from, to)` (RFC 3339), oldest first.
    pub async fn intervals_in(
        &self,
        model: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<IntervalRecord>> {
        let rows = sqlx::query(
            "SELECT model, interval_start, interval_end, status, rows_written, run_id, updated_at, error, attempts
             FROM intervals WHERE model = $1 AND interval_start >= $2 AND interval_start < $3 ORDER BY interval_start",
        )
        .bind(model)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .ctx("read intervals")?;
        rows.iter()
            .map(|r| {
                Ok(IntervalRecord {
                    model: r.try_get(0)?,
                    start: r.try_get(1)?,
                    end: r.try_get(2)?,
                    status: r.try_get(3)?,
                    rows: r.try_get(4)?,
                    run_id: r.try_get(5)?,
                    updated_at: r.try_get(6)?,
                    error: r.try_get(7)?,
                    attempts: r.try_get(8)?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .ctx("read intervals")
    }

    /// Just the start and status of every recorded interval of `model`,
    /// oldest first: the light read behind gap reports and backfill plans.
    pub async fn interval_states(&self, model: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT interval_start, status FROM intervals WHERE model = $1 ORDER BY interval_start",
        )
        .bind(model)
        .fetch_all(&self.pool)
        .await
        .ctx("read intervals")?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .ctx("read intervals")
    }

    /// Forgets every interval of `model` (after a full refresh rebuilds it).
    pub async fn clear_intervals(&self, model: &str) -> Result<()> {
        sqlx::query("DELETE FROM intervals WHERE model = $1")
            .bind(model)
            .execute(&self.pool)
            .await
            .ctx("clear intervals")?;
        Ok(())
    }
}
