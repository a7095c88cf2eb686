//! The scheduler behind `strata serve`: fires cron schedules (each tick
//! claimed once in the state store, missed ticks caught up oldest first) and
//! file-arrival sensors, through a [`Launcher`] that does the runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use strata_project::{Schedule, Trigger};
use strata_state::{StateStore, TickRecord};
use tokio::sync::Mutex;

use crate::rfc3339;

/// A run a schedule asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    /// The schedule's name.
    pub schedule: String,
    /// The selection expression.
    pub select: String,
    /// The data interval: from the previous tick to this one (none for sensors).
    pub interval: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// `schedule:NAME` or `sensor:NAME`, recorded as the run's trigger.
    pub trigger: String,
}

/// Does the runs a scheduler asks for.
#[async_trait::async_trait]
pub trait Launcher: Send + Sync {
    /// Runs `req` to the end; returns the run id and whether it succeeded.
    async fn launch(&self, req: &RunRequest) -> Result<(String, bool), String>;
    /// How many files of `source` have landed and not been ingested yet.
    async fn new_files(&self, source: &str) -> Result<usize, String>;
}

/// What one evaluation of the schedules did.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    /// The schedule.
    pub schedule: String,
    /// The tick (cron) or poll time (sensor).
    pub at: DateTime<Utc>,
    /// The run requested.
    pub request: RunRequest,
    /// The run id and whether it succeeded, or why it could not start.
    pub result: Result<(String, bool), String>,
}

/// Evaluates schedules against a clock and a state store.
pub struct Scheduler {
    state: StateStore,
    schedules: Vec<Schedule>,
    launcher: Arc<dyn Launcher>,
    who: String,
    /// Per sensor: when it last polled.
    polled: Mutex<BTreeMap<String, DateTime<Utc>>>,
    /// Most ticks one schedule catches up in one evaluation.
    catchup_limit: usize,
}

impl Scheduler {
    /// A scheduler for `schedules`, claiming ticks in `state` as `who` (`host:pid`).
    pub fn new(
        state: StateStore,
        schedules: Vec<Schedule>,
        launcher: Arc<dyn Launcher>,
        who: impl Into<String>,
    ) -> Self {
        Self {
            state,
            schedules,
            launcher,
            who: who.into(),
            polled: Mutex::new(BTreeMap::new()),
            catchup_limit: 10_000,
        }
    }

    /// Fires everything due at `now`: for each cron schedule the ticks since
    /// its last claimed one (all, oldest first, with `catchup`; else only the
    /// latest), each claimed first so no other process runs it too; for each
    /// sensor whose poll interval has passed, a run when new files landed.
    /// Runs of one schedule go `max_active_runs` at a time.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<Vec<Fired>, strata_state::Error> {
        let mut fired = vec![];
        for s in &self.schedules {
            let requests = match &s.trigger {
                Trigger::Cron { .. } => self.due_ticks(s, now).await?,
                Trigger::NewFiles { .. } => self.poll(s, now).await,
            };
            for chunk in requests.chunks(s.max_active_runs.max(1) as usize) {
                let mut set = tokio::task::JoinSet::new();
                for (at, req, claimed) in chunk.iter().cloned() {
                    let launcher = self.launcher.clone();
                    let state = self.state.clone();
                    set.spawn(async move {
                        if claimed {
                            state
                                .set_tick(&req.schedule, &rfc3339(at), "running", None)
                                .await?;
                        }
                        let result = launcher.launch(&req).await;
                        if claimed {
                            let (status, run) = match &result {
                                Ok((id, true)) => ("success", Some(id.as_str())),
                                Ok((id, false)) => ("failed", Some(id.as_str())),
                                Err(_) => ("failed", None),
                            };
                            state
                                .set_tick(&req.schedule, &rfc3339(at), status, run)
                                .await?;
                        }
                        Ok::<_, strata_state::Error>(Fired {
                            schedule: req.schedule.clone(),
                            at,
                            request: req,
                            result,
                        })
                    });
                }
                let mut done = vec![];
                while let Some(j) = set.join_next().await {
                    match j {
                        Ok(f) => done.push(f?),
                        Err(e) => {
                            return Err(strata_state::Error::Corrupt {
                                what: "scheduler",
                                detail: format!("a scheduled run panicked (a bug in Strata): {e}"),
                            });
                        }
                    }
                }
                done.sort_by_key(|f| f.at);
                fired.extend(done);
            }
        }
        Ok(fired)
    }

    /// The due ticks of a cron schedule, claimed: (tick, request, claimed).
    async fn due_ticks(
        &self,
        s: &Schedule,
        now: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, RunRequest, bool)>, strata_state::Error> {
        let Trigger::Cron { start, .. } = &s.trigger else {
            return Ok(vec![]);
        };
        let after = match self.state.last_tick(&s.name).await? {
            Some(t) => parse(&t),
            None => match start {
                Some(st) => Some(*st - Duration::seconds(1)),
                None => {
                    // First served now: the latest tick is due, nothing older.
                    let first = self
                        .state
                        .schedule_first_seen(&s.name, &rfc3339(now))
                        .await?;
                    parse(&first)
                        .and_then(|f| s.prev_tick(f))
                        .map(|t| t - Duration::seconds(1))
                }
            },
        };
        let Some(after) = after else {
            return Ok(vec![]);
        };
        let limit = if s.catchup { self.catchup_limit } else { 1 };
        let mut out = vec![];
        for tick in s.ticks_between(after, now, limit) {
            let claimed = self
                .state
                .claim_tick(&TickRecord {
                    schedule: s.name.clone(),
                    tick: rfc3339(tick),
                    status: "claimed".into(),
                    run_id: None,
                    claimed_by: self.who.clone(),
                    claimed_at: rfc3339(now),
                })
                .await?;
            if !claimed {
                continue; // another process has it
            }
            let prev = s.prev_tick(tick - Duration::seconds(1)).unwrap_or(tick);
            out.push((
                tick,
                RunRequest {
                    schedule: s.name.clone(),
                    select: s.select.clone(),
                    interval: Some((prev, tick)),
                    trigger: format!("schedule:{}", s.name),
                },
                true,
            ));
        }
        Ok(out)
    }

    /// A sensor's run, when its poll interval has passed and files landed.
    async fn poll(
        &self,
        s: &Schedule,
        now: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, RunRequest, bool)> {
        let Trigger::NewFiles {
            source,
            poll_seconds,
        } = &s.trigger
        else {
            return vec![];
        };
        {
            let mut polled = self.polled.lock().await;
            if let Some(last) = polled.get(&s.name)
                && now < *last + Duration::seconds(*poll_seconds)
            {
                return vec![];
            }
            polled.insert(s.name.clone(), now);
        }
        match self.launcher.new_files(source).await {
            Ok(0) => vec![],
            Ok(_) => vec![(
                now,
                RunRequest {
                    schedule: s.name.clone(),
                    select: s.select.clone(),
                    interval: None,
                    trigger: format!("sensor:{}", s.name),
                },
                false,
            )],
            Err(e) => {
                tracing::warn!(schedule = %s.name, "cannot list the files of source {source}: {e}");
                vec![]
            }
        }
    }

    /// When something may next be due after `now`: the earliest next cron tick
    /// or sensor poll (at most an hour away).
    pub fn next_wake(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let mut wake = now + Duration::hours(1);
        for s in &self.schedules {
            let t = match &s.trigger {
                Trigger::Cron { .. } => s.next_tick(now),
                Trigger::NewFiles { poll_seconds, .. } => {
                    Some(now + Duration::seconds(*poll_seconds))
                }
            };
            if let Some(t) = t {
                wake = wake.min(t);
            }
        }
        wake
    }
}

use strata_project::parse_time as parse;

#[cfg(test)]
mod tests;
