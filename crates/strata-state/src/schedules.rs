//! Schedule ticks: each tick of each schedule is claimed once, so two
//! `strata serve` processes on one state store never run it twice.

use sqlx::Row;

use crate::StateStore;
use crate::error::{Ctx, Result};

/// One claimed tick of a schedule.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TickRecord {
    /// Schedule name.
    pub schedule: String,
    /// The tick, RFC 3339 (UTC, microseconds).
    pub tick: String,
    /// `claimed`, `running`, `success`, `failed` or `skipped` (not caught up).
    pub status: String,
    /// The run it started.
    pub run_id: Option<String>,
    /// Which process claimed it (`host:pid`).
    pub claimed_by: String,
    /// RFC 3339.
    pub claimed_at: String,
}

impl StateStore {
    /// When the schedule was first served: recorded on the first call, then
    /// returned unchanged.
    pub async fn schedule_first_seen(&self, name: &str, now: &str) -> Result<String> {
        sqlx::query(
            "INSERT INTO schedules (name, first_seen) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(now)
        .execute(&self.pool)
        .await
        .ctx("register schedule")?;
        let row = sqlx::query("SELECT first_seen FROM schedules WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .ctx("read schedule")?;
        row.try_get(0).ctx("read schedule")
    }

    /// Claims a tick: true for exactly one caller, however many race.
    pub async fn claim_tick(&self, t: &TickRecord) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO schedule_ticks (schedule, tick, status, run_id, claimed_by, claimed_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (schedule, tick) DO NOTHING",
        )
        .bind(&t.schedule)
        .bind(&t.tick)
        .bind(&t.status)
        .bind(t.run_id.clone())
        .bind(&t.claimed_by)
        .bind(&t.claimed_at)
        .execute(&self.pool)
        .await
        .ctx("claim tick")?;
        Ok(done.rows_affected() == 1)
    }

    /// Updates a claimed tick's status and run.
    pub async fn set_tick(
        &self,
        schedule: &str,
        tick: &str,
        status: &str,
        run_id: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE schedule_ticks SET status = $3, run_id = COALESCE($4, run_id) WHERE schedule = $1 AND tick = $2",
        )
        .bind(schedule)
        .bind(tick)
        .bind(status)
        .bind(run_id.map(str::to_string))
        .execute(&self.pool)
        .await
        .ctx("update tick")?;
        Ok(())
    }

    /// The newest claimed tick of a schedule.
    pub async fn last_tick(&self, schedule: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT MAX(tick) FROM schedule_ticks WHERE schedule = $1")
            .bind(schedule)
            .fetch_one(&self.pool)
            .await
            .ctx("read ticks")?;
        row.try_get(0).ctx("read ticks")
    }

    /// A schedule's ticks, oldest first.
    pub async fn ticks(&self, schedule: &str) -> Result<Vec<TickRecord>> {
        let rows = sqlx::query(
            "SELECT schedule, tick, status, run_id, claimed_by, claimed_at FROM schedule_ticks WHERE schedule = $1 ORDER BY tick",
        )
        .bind(schedule)
        .fetch_all(&self.pool)
        .await
        .ctx("read ticks")?;
        rows.iter()
            .map(|r| {
                Ok(TickRecord {
                    schedule: r.try_get(0)?,
                    tick: r.try_get(1)?,
                    status: r.try_get(2)?,
                    run_id: r.try_get(3)?,
                    claimed_by: r.try_get(4)?,
                    claimed_at: r.try_get(5)?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .ctx("read ticks")
    }
}
