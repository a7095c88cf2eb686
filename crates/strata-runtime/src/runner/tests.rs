//! Runner tests with a fake executor, each run on SQLite and on PostgreSQL.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::{ErrorKind, TaskError, TaskExecutor};

#[derive(Default)]
struct Fake {
    fail: Vec<String>,
    panic: Vec<String>,
    running: AtomicUsize,
    max_seen: AtomicUsize,
    log: Mutex<Vec<String>>,
    /// Peak memory each task reports (bytes).
    peaks: BTreeMap<String, i64>,
    /// Memory each task is guessed to need before it ever ran (bytes).
    guesses: BTreeMap<String, i64>,
    /// Each task's start and end.
    spans: Mutex<Vec<(String, std::time::Instant, std::time::Instant)>>,
}

#[async_trait::async_trait]
impl TaskExecutor for Fake {
    async fn expected_memory(&self, task: &TaskSpec) -> Option<i64> {
        self.guesses.get(&task.name).copied()
    }

    async fn execute(&self, task: &TaskSpec, _run: &RunInfo) -> Result<TaskOutput, TaskError> {
        let begun = std::time::Instant::now();
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_seen.fetch_max(now, Ordering::SeqCst);
        // Simulated work, long enough that independent tasks overlap.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        if let Ok(mut l) = self.log.lock() {
            l.push(task.name.clone());
        }
        if let Ok(mut l) = self.spans.lock() {
            l.push((task.name.clone(), begun, std::time::Instant::now()));
        }
        if self.panic.contains(&task.name) {
            panic!("simulated bug in {}", task.name);
        }
        if self.fail.contains(&task.name) {
            return Err(TaskError {
                kind: ErrorKind::User,
                message: format!("{} broke", task.name),
            });
        }
        Ok(TaskOutput {
            rows_written: 1,
            peak_memory: self.peaks.get(&task.name).copied().unwrap_or(0),
            ..Default::default()
        })
    }
}

impl Fake {
    /// The tasks whose run overlapped `task`'s.
    fn beside(&self, task: &str) -> Vec<String> {
        let spans = self.spans.lock().expect("spans").clone();
        let Some((_, a, b)) = spans.iter().find(|(n, _, _)| n == task).cloned() else {
            return vec![];
        };
        spans
            .into_iter()
            .filter(|(n, s, e)| n != task && *s < b && *e > a)
            .map(|(n, _, _)| n)
            .collect()
    }
}

fn spec(name: &str, up: &[&str]) -> TaskSpec {
    TaskSpec::new(name, "table", up.iter().map(|s| s.to_string()).collect())
}

async fn runs_in_dependency_order_and_overlaps_independent_tasks(state: StateStore) {
    let fake = Arc::new(Fake::default());
    let plan = vec![
        spec("a", &[]),
        spec("b", &[]),
        spec("c", &["a", "b"]),
        spec("d", &["c"]),
    ];
    let s = Runner::new(state.clone(), 2)
        .run(fake.clone(), plan, RunOptions::default())
        .await
        .expect("run");
    assert!(s.ok());
    let log = fake.log.lock().expect("log").clone();
    let pos = |n: &str| log.iter().position(|x| x == n).expect("ran");
    assert!(
        pos("c") > pos("a") && pos("c") > pos("b") && pos("d") > pos("c"),
        "{log:?}"
    );
    assert_eq!(
        fake.max_seen.load(Ordering::SeqCst),
        2,
        "a and b should overlap"
    );
    let recorded = state.tasks(&s.run_id).await.expect("tasks");
    assert_eq!(recorded.len(), 4);
    assert!(recorded.iter().all(|t| t.status == "success"));
    assert_eq!(
        state
            .run(&s.run_id)
            .await
            .expect("run")
            .expect("exists")
            .status,
        "success"
    );
}

async fn failure_skips_downstream_but_not_independent_branches(state: StateStore) {
    let fake = Arc::new(Fake {
        fail: vec!["a".into()],
        ..Default::default()
    });
    let plan = vec![
        spec("a", &[]),
        spec("b", &[]),
        spec("c", &["a"]),
        spec("d", &["c"]),
        spec("e", &["b"]),
    ];
    let s = Runner::new(state.clone(), 1)
        .run(fake, plan, RunOptions::default())
        .await
        .expect("run");
    assert!(!s.ok());
    let status: BTreeMap<String, String> = s
        .tasks
        .iter()
        .map(|t| (t.task.clone(), t.status.clone()))
        .collect();
    assert_eq!(status["a"], "failed");
    assert_eq!(status["c"], "upstream_failed");
    assert_eq!(status["d"], "upstream_failed");
    assert_eq!(status["b"], "success");
    assert_eq!(status["e"], "success");
    assert_eq!(
        state
            .run(&s.run_id)
            .await
            .expect("run")
            .expect("exists")
            .status,
        "failed"
    );
}

async fn upstream_outside_the_plan_counts_as_done(state: StateStore) {
    let s = Runner::new(state, 2)
        .run(
            Arc::new(Fake::default()),
            vec![spec("c", &["not_selected"])],
            RunOptions::default(),
        )
        .await
        .expect("run");
    assert!(s.ok());
    assert_eq!(s.tasks.len(), 1);
}

async fn a_dead_run_is_marked_interrupted_by_the_next(state: StateStore) {
    state
        .create_run(&strata_state::RunRecord {
            run_id: "old".into(),
            started_at: "2020-01-01T00:00:00Z".into(),
            ended_at: None,
            status: "running".into(),
            selection: String::new(),
            full_refresh: false,
            trigger: "cli".into(),
            resumed_from: None,
            interval: None,
        })
        .await
        .expect("create");
    let clock = crate::TestClock::new(chrono::Utc::now());
    let s = Runner::new(state.clone(), 1)
        .with_clock(Arc::new(clock))
        .run(
            Arc::new(Fake::default()),
            vec![spec("a", &[])],
            RunOptions::default(),
        )
        .await
        .expect("run");
    assert_eq!(s.interrupted, vec!["old".to_string()]);
    assert_eq!(
        state.run("old").await.expect("run").expect("exists").status,
        "interrupted"
    );
}

async fn a_panicking_task_fails_alone(state: StateStore) {
    let fake = Arc::new(Fake {
        panic: vec!["a".into()],
        ..Default::default()
    });
    let plan = vec![spec("a", &[]), spec("b", &[]), spec("c", &["a"])];
    let s = Runner::new(state, 2)
        .run(fake, plan, RunOptions::default())
        .await
        .expect("run");
    let by: BTreeMap<String, TaskRecord> =
        s.tasks.into_iter().map(|t| (t.task.clone(), t)).collect();
    assert_eq!(by["a"].status, "failed");
    assert!(
        by["a"]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("panicked (a bug in Strata)")
    );
    assert_eq!(by["b"].status, "success");
    assert_eq!(by["c"].status, "upstream_failed");
}

/// Fails a task a set number of times, with a given kind, then succeeds.
struct Flaky {
    failures: AtomicUsize,
    kind: ErrorKind,
    calls: AtomicUsize,
    hang: bool,
}

#[async_trait::async_trait]
impl TaskExecutor for Flaky {
    async fn execute(&self, _task: &TaskSpec, _run: &RunInfo) -> Result<TaskOutput, TaskError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.hang {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        }
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Err(TaskError {
                kind: self.kind,
                message: "store unavailable".into(),
            });
        }
        Ok(TaskOutput::default())
    }
}

fn flaky(failures: usize, kind: ErrorKind) -> Arc<Flaky> {
    Arc::new(Flaky {
        failures: AtomicUsize::new(failures),
        kind,
        calls: AtomicUsize::new(0),
        hang: false,
    })
}

async fn outside_failures_are_retried_with_exponential_backoff(state: StateStore) {
    let f = flaky(2, ErrorKind::External);
    let mut t = spec("a", &[]);
    t.retries = 3;
    t.retry_delay = std::time::Duration::from_millis(20);
    let before = std::time::Instant::now();
    let s = Runner::new(state.clone(), 1)
        .run(f.clone(), vec![t], RunOptions::default())
        .await
        .expect("run");
    assert!(s.ok());
    assert_eq!(f.calls.load(Ordering::SeqCst), 3);
    assert_eq!(s.tasks[0].attempts, 3);
    // 20 ms, then 40 ms of backoff
    assert!(
        before.elapsed() >= std::time::Duration::from_millis(60),
        "{:?}",
        before.elapsed()
    );
    assert_eq!(state.tasks(&s.run_id).await.expect("tasks")[0].attempts, 3);
}

async fn retries_run_out_and_user_errors_are_not_retried(state: StateStore) {
    let f = flaky(5, ErrorKind::External);
    let mut t = spec("a", &[]);
    t.retries = 2;
    t.retry_delay = std::time::Duration::from_millis(1);
    let s = Runner::new(state.clone(), 1)
        .run(f.clone(), vec![t.clone()], RunOptions::default())
        .await
        .expect("run");
    assert!(!s.ok());
    assert_eq!(f.calls.load(Ordering::SeqCst), 3);
    assert!(
        s.tasks[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("after 3 attempts")
    );

    let f = flaky(5, ErrorKind::User);
    let s = Runner::new(state, 1)
        .run(f.clone(), vec![t], RunOptions::default())
        .await
        .expect("run");
    assert!(!s.ok());
    assert_eq!(
        f.calls.load(Ordering::SeqCst),
        1,
        "a user error is not retried"
    );
}

async fn a_task_over_its_timeout_fails_and_its_downstream_is_skipped(state: StateStore) {
    let f = Arc::new(Flaky {
        failures: AtomicUsize::new(0),
        kind: ErrorKind::External,
        calls: AtomicUsize::new(0),
        hang: true,
    });
    let mut t = spec("a", &[]);
    t.timeout = Some(std::time::Duration::from_millis(100));
    let s = Runner::new(state, 1)
        .run(f, vec![t, spec("b", &["a"])], RunOptions::default())
        .await
        .expect("run");
    assert_eq!(s.tasks[0].status, "failed");
    assert!(
        s.tasks[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("timed out after")
    );
    assert_eq!(s.tasks[1].status, "upstream_failed");
}

async fn a_live_run_holds_the_lock(state: StateStore) {
    // This very process holds the lock under another run id.
    let holder = strata_state::LockHolder {
        run_id: "other".into(),
        host: host_name(),
        pid: i64::from(std::process::id()),
        acquired_at: "2026-01-01T00:00:00Z".into(),
        heartbeat_at: "2026-01-01T00:00:00Z".into(),
    };
    assert_eq!(
        state
            .acquire_run_lock(&holder, |_| true)
            .await
            .expect("lock"),
        Ok(None)
    );
    let e = Runner::new(state.clone(), 1)
        .run(
            Arc::new(Fake::default()),
            vec![spec("a", &[])],
            RunOptions::default(),
        )
        .await;
    assert!(matches!(e, Err(strata_state::Error::Busy(_))), "{e:?}");
    // A holder whose process is gone is replaced.
    state.release_run_lock("other").await.expect("release");
    let dead = strata_state::LockHolder {
        pid: 999_999_999,
        ..holder
    };
    assert_eq!(
        state.acquire_run_lock(&dead, |_| true).await.expect("lock"),
        Ok(None)
    );
    let s = Runner::new(state, 1)
        .run(
            Arc::new(Fake::default()),
            vec![spec("a", &[])],
            RunOptions::default(),
        )
        .await
        .expect("run");
    assert!(s.ok());
}

const MB: i64 = 1 << 20;

/// Bytes by task name, from megabytes.
fn in_mb(of: &[(&str, i64)]) -> BTreeMap<String, i64> {
    of.iter().map(|(t, mb)| (t.to_string(), mb * MB)).collect()
}

async fn a_task_that_needed_the_most_memory_runs_alone_next_time(state: StateStore) {
    let plan = || vec![spec("big", &[]), spec("small", &[]), spec("tiny", &[])];
    let fake = || {
        Arc::new(Fake {
            peaks: in_mb(&[("big", 900), ("small", 100), ("tiny", 10)]),
            ..Default::default()
        })
    };
    // The first run knows nothing of the tasks' memory: big has company.
    let first = fake();
    let s = Runner::new(state.clone(), 2)
        .run(first.clone(), plan(), RunOptions::default())
        .await
        .expect("run");
    assert!(s.ok());
    assert!(first.beside("big").contains(&"small".to_string()));
    let recorded = state.tasks(&s.run_id).await.expect("tasks");
    assert!(
        recorded
            .iter()
            .any(|t| t.task == "big" && t.peak_memory == 900 * MB)
    );
    // The next run expects what was recorded: big alone, the others together.
    let next = fake();
    let s = Runner::new(state.clone(), 2)
        .run(next.clone(), plan(), RunOptions::default())
        .await
        .expect("run");
    assert!(s.ok());
    assert!(next.beside("big").is_empty(), "{:?}", next.beside("big"));
    assert_eq!(next.beside("small"), vec!["tiny".to_string()]);
}

async fn a_task_guessed_heavy_runs_alone_the_first_time(state: StateStore) {
    let fake = Arc::new(Fake {
        guesses: in_mb(&[("small", 100), ("big", 900), ("tiny", 10)]),
        ..Default::default()
    });
    let plan = vec![spec("small", &[]), spec("big", &[]), spec("tiny", &[])];
    let s = Runner::new(state, 2)
        .run(fake.clone(), plan, RunOptions::default())
        .await
        .expect("run");
    assert!(s.ok());
    // small starts; big, guessed heavier than the budget beside it, waits
    // for it, then runs alone; tiny waits behind big.
    assert!(fake.beside("big").is_empty(), "{:?}", fake.beside("big"));
    let log = fake.log.lock().expect("log").clone();
    assert_eq!(log, vec!["small", "big", "tiny"]);
}

on_both_backends!(
    a_task_that_needed_the_most_memory_runs_alone_next_time,
    a_task_guessed_heavy_runs_alone_the_first_time,
    runs_in_dependency_order_and_overlaps_independent_tasks,
    failure_skips_downstream_but_not_independent_branches,
    upstream_outside_the_plan_counts_as_done,
    a_dead_run_is_marked_interrupted_by_the_next,
    a_panicking_task_fails_alone,
    outside_failures_are_retried_with_exponential_backoff,
    retries_run_out_and_user_errors_are_not_retried,
    a_task_over_its_timeout_fails_and_its_downstream_is_skipped,
    a_live_run_holds_the_lock
);

#[test]
fn a_holder_on_another_host_lives_by_its_heartbeat() {
    let h = |ago: i64| strata_state::LockHolder {
        run_id: "r".into(),
        host: "some-other-host".into(),
        pid: 1,
        acquired_at: rfc3339(Utc::now() - chrono::Duration::hours(1)),
        heartbeat_at: rfc3339(Utc::now() - chrono::Duration::seconds(ago)),
    };
    assert!(is_alive(&h(5)), "a fresh heartbeat");
    assert!(!is_alive(&h(300)), "silent for five minutes: dead");
}
