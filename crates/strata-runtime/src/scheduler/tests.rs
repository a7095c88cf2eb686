//! Scheduler tests with a fake launcher and explicit times (no sleeping on
//! the clock), each on SQLite and PostgreSQL.

use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use strata_project::schedule::parse_cron;

use super::*;

#[derive(Default)]
struct FakeLauncher {
    requests: StdMutex<Vec<RunRequest>>,
    new_files: AtomicUsize,
    running: AtomicUsize,
    max_seen: AtomicUsize,
}

#[async_trait::async_trait]
impl Launcher for FakeLauncher {
    async fn launch(&self, req: &RunRequest) -> Result<(String, bool), String> {
        let n = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_seen.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        let mut r = self.requests.lock().map_err(|e| e.to_string())?;
        r.push(req.clone());
        Ok((format!("run{}", r.len()), true))
    }
    async fn new_files(&self, _source: &str) -> Result<usize, String> {
        Ok(self.new_files.swap(0, Ordering::SeqCst))
    }
}

fn t(s: &str) -> DateTime<Utc> {
    strata_project::parse_time(s).expect("time")
}

fn cron(name: &str, expr: &str, tz: &str, start: Option<&str>, catchup: bool) -> Schedule {
    Schedule {
        name: name.into(),
        trigger: Trigger::Cron {
            expr: expr.into(),
            cron: Box::new(parse_cron(expr).expect("cron")),
            timezone: tz.parse().expect("tz"),
            start: start.map(t),
        },
        select: "+gold.x".into(),
        catchup,
        max_active_runs: 1,
    }
}

fn scheduler(state: &StateStore, s: Vec<Schedule>, l: &Arc<FakeLauncher>) -> Scheduler {
    Scheduler::new(state.clone(), s, l.clone(), "test:1")
}

async fn catches_up_missed_ticks_oldest_first(state: StateStore) {
    let l = Arc::new(FakeLauncher::default());
    let s = scheduler(
        &state,
        vec![cron(
            "nightly",
            "0 2 * * *",
            "Europe/Berlin",
            Some("2024-01-01"),
            true,
        )],
        &l,
    );
    // Down since the start: four nights are due.
    let fired = s.tick(t("2024-01-04T12:00:00Z")).await.expect("tick");
    let ats: Vec<_> = fired.iter().map(|f| f.at).collect();
    assert_eq!(
        ats,
        vec![
            t("2024-01-01T01:00:00Z"),
            t("2024-01-02T01:00:00Z"),
            t("2024-01-03T01:00:00Z"),
            t("2024-01-04T01:00:00Z")
        ]
    );
    // Each run covers the interval since the previous tick.
    assert_eq!(
        fired[1].request.interval,
        Some((t("2024-01-01T01:00:00Z"), t("2024-01-02T01:00:00Z")))
    );
    assert_eq!(fired[0].request.trigger, "schedule:nightly");
    // Nothing twice.
    assert!(
        s.tick(t("2024-01-04T12:00:00Z"))
            .await
            .expect("tick")
            .is_empty()
    );
    // Two more nights of downtime.
    let fired = s.tick(t("2024-01-06T01:00:00Z")).await.expect("tick");
    assert_eq!(fired.len(), 2);
    let ticks = state.ticks("nightly").await.expect("ticks");
    assert_eq!(ticks.len(), 6);
    assert!(
        ticks
            .iter()
            .all(|k| k.status == "success" && k.run_id.is_some())
    );
}

async fn without_catchup_only_the_latest_tick_runs(state: StateStore) {
    let l = Arc::new(FakeLauncher::default());
    let s = scheduler(
        &state,
        vec![cron(
            "hourly",
            "0 * * * *",
            "UTC",
            Some("2024-01-01"),
            false,
        )],
        &l,
    );
    let fired = s.tick(t("2024-01-01T05:30:00Z")).await.expect("tick");
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].at, t("2024-01-01T05:00:00Z"));
    assert_eq!(
        fired[0].request.interval,
        Some((t("2024-01-01T04:00:00Z"), t("2024-01-01T05:00:00Z")))
    );
}

async fn a_new_schedule_runs_its_latest_tick_only(state: StateStore) {
    let l = Arc::new(FakeLauncher::default());
    let s = scheduler(&state, vec![cron("n", "0 2 * * *", "UTC", None, true)], &l);
    let fired = s.tick(t("2024-03-10T12:00:00Z")).await.expect("tick");
    assert_eq!(
        fired.iter().map(|f| f.at).collect::<Vec<_>>(),
        vec![t("2024-03-10T02:00:00Z")]
    );
    // A restart after two days of downtime catches up from there.
    let fired = s.tick(t("2024-03-12T03:00:00Z")).await.expect("tick");
    assert_eq!(fired.len(), 2);
}

async fn two_schedulers_never_run_a_tick_twice(state: StateStore) {
    let la = Arc::new(FakeLauncher::default());
    let lb = Arc::new(FakeLauncher::default());
    let sched = || vec![cron("n", "0 * * * *", "UTC", Some("2024-01-01"), true)];
    let a = Scheduler::new(state.clone(), sched(), la.clone(), "host-a:1");
    let b = Scheduler::new(state.clone(), sched(), lb.clone(), "host-b:2");
    let now = t("2024-01-01T09:30:00Z");
    let (fa, fb) = tokio::join!(a.tick(now), b.tick(now));
    let (fa, fb) = (fa.expect("a"), fb.expect("b"));
    let mut all: Vec<_> = fa.iter().chain(fb.iter()).map(|f| f.at).collect();
    all.sort();
    let expected: Vec<_> = (0..10)
        .map(|h| t("2024-01-01T00:00:00Z") + Duration::hours(h))
        .collect();
    assert_eq!(
        all, expected,
        "every tick exactly once across both processes"
    );
}

async fn a_sensor_runs_when_files_land(state: StateStore) {
    let l = Arc::new(FakeLauncher::default());
    let sensor = Schedule {
        name: "orders_arrive".into(),
        trigger: Trigger::NewFiles {
            source: "orders".into(),
            poll_seconds: 60,
        },
        select: "bronze.orders+".into(),
        catchup: true,
        max_active_runs: 1,
    };
    let s = scheduler(&state, vec![sensor], &l);
    let t0 = t("2024-01-01T00:00:00Z");
    assert!(s.tick(t0).await.expect("tick").is_empty(), "no files yet");
    l.new_files.store(2, Ordering::SeqCst);
    assert!(
        s.tick(t0 + Duration::seconds(30))
            .await
            .expect("tick")
            .is_empty(),
        "not polled before its interval"
    );
    let fired = s.tick(t0 + Duration::seconds(60)).await.expect("tick");
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].request.select, "bronze.orders+");
    assert_eq!(fired[0].request.trigger, "sensor:orders_arrive");
    assert!(
        s.tick(t0 + Duration::seconds(120))
            .await
            .expect("tick")
            .is_empty()
    );
    assert_eq!(s.next_wake(t0), t0 + Duration::seconds(60));
}

async fn max_active_runs_bounds_concurrency(state: StateStore) {
    let l = Arc::new(FakeLauncher::default());
    let mut sc = cron("n", "0 * * * *", "UTC", Some("2024-01-01"), true);
    sc.max_active_runs = 3;
    let s = scheduler(&state, vec![sc], &l);
    let fired = s.tick(t("2024-01-01T05:00:00Z")).await.expect("tick");
    assert_eq!(fired.len(), 6);
    assert_eq!(l.max_seen.load(Ordering::SeqCst), 3);
}

on_both_backends!(
    catches_up_missed_ticks_oldest_first,
    without_catchup_only_the_latest_tick_runs,
    a_new_schedule_runs_its_latest_tick_only,
    two_schedulers_never_run_a_tick_twice,
    a_sensor_runs_when_files_land,
    max_active_runs_bounds_concurrency,
);
