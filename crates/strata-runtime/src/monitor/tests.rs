//! Monitoring and alerting with a recording notifier and explicit times (no
//! sleeping), each on SQLite and PostgreSQL.

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use strata_project::{AlertRule, Project};
use strata_state::{Silence, StateStore, TaskRecord};

use super::*;
use crate::rfc3339;

#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<(String, Alert)>>,
}

#[async_trait::async_trait]
impl Notifier for Recorder {
    async fn notify(&self, rule: &AlertRule, alert: &Alert) -> Result<(), String> {
        self.sent
            .lock()
            .map_err(|e| e.to_string())?
            .push((rule.name.clone(), alert.clone()));
        Ok(())
    }
}

impl Recorder {
    fn take(&self) -> Vec<(String, Alert)> {
        self.sent
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

const TOML: &str = r#"[project]
name = "mon"

[sources.a]
format = "csv"
path = "data/*.csv"
freshness = "26h"

[alerts.team]
on = ["task_failed", "sla_missed", "anomaly", "check_failed", "duration_over"]
command = "cat > /dev/null"
repeat_after = "4h"
max_duration = "10m"

[alerts.finance]
on = ["task_failed"]
owner = "finance"
command = "cat > /dev/null"
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    project: Project,
    graph: strata_graph::Graph,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("strata.toml"), TOML).expect("write");
    std::fs::create_dir_all(dir.path().join("models/silver")).expect("mkdir");
    std::fs::write(
        dir.path().join("models/silver/a.sql"),
        "select * from bronze.a",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("models/silver/money.sql"),
        "/*\nowner = \"finance\"\n*/\nselect * from silver.a",
    )
    .expect("write");
    let project = Project::load(dir.path()).expect("project");
    let graph = strata_graph::Graph::build(&project).expect("graph");
    Fixture {
        _dir: dir,
        project,
        graph,
    }
}

fn t0() -> DateTime<Utc> {
    strata_project::parse_time("2026-03-01T00:00:00Z").expect("time")
}

async fn task(
    store: &StateStore,
    run: &str,
    model: &str,
    status: &str,
    rows: i64,
    end: DateTime<Utc>,
    secs: i64,
) {
    store
        .upsert_task(&TaskRecord {
            run_id: run.into(),
            task: model.into(),
            model: model.into(),
            kind: "table".into(),
            status: status.into(),
            started_at: Some(rfc3339(end - Duration::seconds(secs))),
            ended_at: Some(rfc3339(end)),
            rows_written: rows,
            attempts: 1,
            error: (status == "failed").then(|| "boom".to_string()),
            ..Default::default()
        })
        .await
        .expect("task");
}

async fn tick(store: &StateStore, f: &Fixture, r: &Recorder, at: DateTime<Utc>) -> Vec<Delivery> {
    let health = evaluate(store, &f.project, &f.graph, at)
        .await
        .expect("evaluate");
    reconcile(store, &f.project, &f.graph, &health, at, r)
        .await
        .expect("reconcile")
}

fn kinds(v: &[(String, Alert)]) -> Vec<String> {
    v.iter()
        .map(|(rule, a)| {
            format!(
                "{rule} {} {} {}{}",
                a.status,
                a.kind,
                a.subject,
                if a.repeat { " (repeat)" } else { "" }
            )
        })
        .collect()
}

async fn an_incident_alerts_once_repeats_then_resolves_once(store: StateStore) {
    let f = fixture();
    let r = Recorder::default();
    task(&store, "r1", "bronze.a", "success", 10, t0(), 1).await;
    task(&store, "r1", "silver.a", "failed", 0, t0(), 1).await;
    tick(&store, &f, &r, t0()).await;
    assert_eq!(kinds(&r.take()), ["team firing task_failed silver.a"]);
    tick(&store, &f, &r, t0() + Duration::hours(1)).await;
    assert!(r.take().is_empty(), "no repeat before repeat_after");
    tick(&store, &f, &r, t0() + Duration::hours(4)).await;
    assert_eq!(
        kinds(&r.take()),
        ["team firing task_failed silver.a (repeat)"]
    );
    task(
        &store,
        "r2",
        "silver.a",
        "success",
        10,
        t0() + Duration::hours(5),
        1,
    )
    .await;
    tick(&store, &f, &r, t0() + Duration::hours(5)).await;
    let sent = r.take();
    assert_eq!(kinds(&sent), ["team resolved task_failed silver.a"]);
    assert!(sent[0].1.resolved_at.is_some());
    tick(&store, &f, &r, t0() + Duration::hours(6)).await;
    assert!(r.take().is_empty(), "resolved exactly once");
    let incidents = store.incidents(10).await.expect("incidents");
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].status, "resolved");
    assert_eq!(incidents[0].sends, 3);
}

async fn silence_holds_alerts_back_until_it_ends(store: StateStore) {
    let f = fixture();
    let r = Recorder::default();
    task(&store, "r0", "bronze.a", "success", 10, t0(), 1).await;
    store
        .add_silence(&Silence {
            rule: "team".into(),
            created_at: rfc3339(t0()),
            until: rfc3339(t0() + Duration::hours(2)),
            reason: None,
        })
        .await
        .expect("silence");
    task(&store, "r1", "silver.a", "failed", 0, t0(), 1).await;
    let d = tick(&store, &f, &r, t0() + Duration::minutes(1)).await;
    assert!(r.take().is_empty());
    assert!(d.iter().any(|d| d.silenced && !d.sent));
    tick(&store, &f, &r, t0() + Duration::hours(2)).await;
    assert_eq!(kinds(&r.take()), ["team firing task_failed silver.a"]);
}

async fn owner_rules_get_only_their_tables(store: StateStore) {
    let f = fixture();
    let r = Recorder::default();
    task(&store, "r0", "bronze.a", "success", 10, t0(), 1).await;
    task(&store, "r1", "silver.money", "failed", 0, t0(), 1).await;
    tick(&store, &f, &r, t0()).await;
    let mut got = kinds(&r.take());
    got.sort();
    assert_eq!(
        got,
        [
            "finance firing task_failed silver.money",
            "team firing task_failed silver.money"
        ]
    );
    task(
        &store,
        "r2",
        "silver.a",
        "failed",
        0,
        t0() + Duration::minutes(1),
        1,
    )
    .await;
    tick(&store, &f, &r, t0() + Duration::minutes(1)).await;
    assert_eq!(kinds(&r.take()), ["team firing task_failed silver.a"]);
}

async fn freshness_sla_is_missed_and_recovers(store: StateStore) {
    let f = fixture();
    let r = Recorder::default();
    task(&store, "r1", "bronze.a", "success", 10, t0(), 1).await;
    tick(&store, &f, &r, t0() + Duration::hours(25)).await;
    assert!(r.take().is_empty());
    let d = tick(&store, &f, &r, t0() + Duration::hours(27)).await;
    assert_eq!(kinds(&r.take()), ["team firing sla_missed bronze.a"]);
    assert!(
        d[0].alert
            .summary
            .contains("over its freshness SLA of 1d 2h"),
        "{}",
        d[0].alert.summary
    );
    // A load without new rows does not make it fresh.
    task(
        &store,
        "r2",
        "bronze.a",
        "success",
        0,
        t0() + Duration::hours(28),
        1,
    )
    .await;
    tick(&store, &f, &r, t0() + Duration::hours(28)).await;
    assert!(r.take().is_empty());
    task(
        &store,
        "r3",
        "bronze.a",
        "success",
        5,
        t0() + Duration::hours(29),
        1,
    )
    .await;
    tick(&store, &f, &r, t0() + Duration::hours(29)).await;
    assert_eq!(kinds(&r.take()), ["team resolved sla_missed bronze.a"]);
}

async fn a_tenfold_day_raises_one_anomaly_for_its_root(store: StateStore) {
    let f = fixture();
    let r = Recorder::default();
    for day in 0..8i64 {
        let at = t0() + Duration::days(day);
        let rows = 100 + (day * 7) % 11;
        task(
            &store,
            &format!("r{day}"),
            "bronze.a",
            "success",
            rows,
            at,
            1,
        )
        .await;
        task(
            &store,
            &format!("r{day}"),
            "silver.a",
            "success",
            rows,
            at,
            1,
        )
        .await;
    }
    tick(&store, &f, &r, t0() + Duration::days(7)).await;
    assert!(r.take().is_empty(), "normal days raise nothing");
    let at = t0() + Duration::days(8);
    task(&store, "r8", "bronze.a", "success", 1_000, at, 1).await;
    task(&store, "r8", "silver.a", "success", 1_000, at, 1).await;
    let d = tick(&store, &f, &r, at).await;
    assert_eq!(kinds(&r.take()), ["team firing anomaly bronze.a rows"]);
    assert!(
        d[0].alert.summary.contains("also affects silver.a"),
        "{}",
        d[0].alert.summary
    );
    let at = t0() + Duration::days(9);
    task(&store, "r9", "bronze.a", "success", 104, at, 1).await;
    task(&store, "r9", "silver.a", "success", 104, at, 1).await;
    tick(&store, &f, &r, at).await;
    assert_eq!(kinds(&r.take()), ["team resolved anomaly bronze.a rows"]);
}

async fn duration_over_uses_the_rules_threshold(store: StateStore) {
    let f = fixture();
    let r = Recorder::default();
    task(&store, "r0", "bronze.a", "success", 10, t0(), 1).await;
    task(&store, "r1", "silver.a", "success", 10, t0(), 11 * 60).await;
    tick(&store, &f, &r, t0()).await;
    assert_eq!(kinds(&r.take()), ["team firing duration_over silver.a"]);
}

on_both_backends!(
    an_incident_alerts_once_repeats_then_resolves_once,
    silence_holds_alerts_back_until_it_ends,
    owner_rules_get_only_their_tables,
    freshness_sla_is_missed_and_recovers,
    a_tenfold_day_raises_one_anomaly_for_its_root,
    duration_over_uses_the_rules_threshold,
);
