//! State-store tests, on SQLite and on the machine's real PostgreSQL.

use super::*;

async fn exercise(store: &StateStore) {
    let run = RunRecord {
        run_id: "r1".into(),
        started_at: "2026-01-01T00:00:00.000000Z".into(),
        ended_at: None,
        status: "running".into(),
        selection: "+gold.x".into(),
        full_refresh: false,
        trigger: "cli".into(),
        resumed_from: None,
        interval: Some(("2024-01-01T00:00:00Z".into(), "2024-01-02T00:00:00Z".into())),
    };
    store.create_run(&run).await.expect("create run");
    assert_eq!(
        store
            .run("r1")
            .await
            .expect("run")
            .expect("exists")
            .interval,
        run.interval
    );

    let me = LockHolder {
        run_id: "r9".into(),
        host: "h".into(),
        pid: 1,
        acquired_at: now(),
        heartbeat_at: now(),
    };
    let other = LockHolder {
        run_id: "r8".into(),
        ..me.clone()
    };
    assert_eq!(
        store.acquire_run_lock(&me, |_| true).await.expect("lock"),
        Ok(None)
    );
    assert_eq!(
        store
            .acquire_run_lock(&other, |_| true)
            .await
            .expect("lock"),
        Err(me.clone()),
        "a live holder keeps it"
    );
    assert_eq!(
        store
            .acquire_run_lock(&other, |_| false)
            .await
            .expect("lock"),
        Ok(Some("r9".to_string())),
        "a dead one is replaced"
    );
    store.release_run_lock("r8").await.expect("release");
    assert_eq!(
        store.acquire_run_lock(&me, |_| true).await.expect("lock"),
        Ok(None)
    );
    store
        .heartbeat("r9", "2030-01-01T00:00:00.000000Z")
        .await
        .expect("heartbeat");
    match store
        .acquire_run_lock(&other, |_| true)
        .await
        .expect("lock")
    {
        Err(h) => assert_eq!(h.heartbeat_at, "2030-01-01T00:00:00.000000Z"),
        Ok(_) => panic!("the holder is alive"),
    }
    store.release_run_lock("r9").await.expect("release");
    let mut t = TaskRecord {
        run_id: "r1".into(),
        task: "silver.a".into(),
        kind: "table".into(),
        status: "running".into(),
        attempts: 1,
        ..Default::default()
    };
    store.upsert_task(&t).await.expect("task");
    t.status = "success".into();
    t.rows_written = 42;
    t.delta_version = Some(3);
    t.cpu_ms = 17;
    t.bytes_read = 1000;
    t.bytes_written = 2000;
    t.rows_dropped = 2;
    t.table_rows = Some(40);
    t.data_time = Some("2024-01-01T00:00:00.000000Z".into());
    t.peak_memory = 5000;
    t.ended_at = Some("2026-01-01T00:00:10.000000Z".into());
    store.upsert_task(&t).await.expect("task update");
    // The table is filled in from the task name when not given.
    t.model = "silver.a".into();
    assert_eq!(store.tasks("r1").await.expect("tasks"), vec![t.clone()]);

    // The peak expected of a table is that of its latest successful,
    // measured task: not a later failure's, nor an unmeasured one's.
    let later = |run: &str, status: &str, peak: i64, end: &str| TaskRecord {
        run_id: run.into(),
        status: status.into(),
        peak_memory: peak,
        ended_at: Some(end.into()),
        ..t.clone()
    };
    for task in [
        later("r1b", "success", 7000, "2026-01-02T00:00:00.000000Z"),
        later("r1c", "failed", 9000, "2026-01-03T00:00:00.000000Z"),
        later("r1d", "success", 0, "2026-01-04T00:00:00.000000Z"),
        TaskRecord {
            task: "silver.b".into(),
            model: "silver.b".into(),
            ..later("r1b", "success", 300, "2026-01-02T00:00:00.000000Z")
        },
    ] {
        store.upsert_task(&task).await.expect("task");
    }
    assert_eq!(
        store.peak_memory_by_model().await.expect("peaks"),
        BTreeMap::from([
            ("silver.a".to_string(), 7000),
            ("silver.b".to_string(), 300)
        ])
    );

    // A second process finds the dead run and marks it interrupted.
    assert_eq!(
        store.mark_interrupted("r2").await.expect("mark"),
        vec!["r1".to_string()]
    );
    assert_eq!(
        store.run("r1").await.expect("run").expect("exists").status,
        "interrupted"
    );

    store
        .finish_run("r1", "failed", "2026-01-01T00:01:00Z")
        .await
        .expect("finish");
    let runs = store.runs(5).await.expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, "failed");

    let f = IngestedFile {
        source: "orders".into(),
        batch_id: "b1".into(),
        file: "/d/1.ndjson".into(),
        size_bytes: 10,
        modified: "x".into(),
        rows_read: 5,
        rows_loaded: 4,
        rows_quarantined: 1,
        rows_dropped: 0,
        delta_version: Some(0),
        run_id: "r1".into(),
        ingested_at: now(),
    };
    store
        .record_files(std::slice::from_ref(&f))
        .await
        .expect("manifest");
    store
        .record_files(std::slice::from_ref(&f))
        .await
        .expect("manifest is idempotent");
    assert!(
        store
            .ingested_files("orders")
            .await
            .expect("files")
            .contains("/d/1.ndjson")
    );
    assert_eq!(store.files_of("orders").await.expect("files"), vec![f]);

    let ms = ModelState {
        model: "silver.a".into(),
        fingerprint: "abc".into(),
        upstream_versions: BTreeMap::from([("bronze.o".to_string(), 7)]),
        delta_version: Some(2),
        built_at: now(),
        run_id: "r1".into(),
    };
    store.set_model_state(&ms).await.expect("set");
    assert_eq!(store.model_state("silver.a").await.expect("get"), Some(ms));
    store.clear_model_state("silver.a").await.expect("clear");

    let c = CheckResult {
        run_id: "r1".into(),
        model: "silver.a".into(),
        check_name: "not_null(id)".into(),
        kind: "table".into(),
        severity: "error".into(),
        status: "fail".into(),
        failing_rows: 3,
        action: None,
        sample: "[{\"id\":null}]".into(),
        checked_at: now(),
        interval: None,
    };
    store
        .record_checks(std::slice::from_ref(&c))
        .await
        .expect("checks");
    store
        .record_checks(std::slice::from_ref(&c))
        .await
        .expect("checks again");
    assert_eq!(
        store.check_results("r1").await.expect("read"),
        vec![c.clone()]
    );
    assert_eq!(
        store.check_history("silver.a").await.expect("history"),
        vec![c.clone()]
    );
    assert_eq!(store.model_state("silver.a").await.expect("get"), None);

    // The same check on two intervals of one run: two results.
    let day = |d: u32| format!("2024-01-{d:02}T00:00:00.000000Z");
    let per_interval: Vec<CheckResult> = [1, 2]
        .iter()
        .map(|d| CheckResult {
            run_id: "r5".into(),
            interval: Some((day(*d), day(d + 1))),
            ..c.clone()
        })
        .collect();
    store.record_checks(&per_interval).await.expect("checks");
    assert_eq!(store.check_results("r5").await.expect("read"), per_interval);

    // Intervals: recorded, replaced, counted.
    let iv = |d: u32, status: &str| IntervalRecord {
        model: "silver.p".into(),
        start: day(d),
        end: day(d + 1),
        status: status.into(),
        rows: Some(10),
        run_id: "r1".into(),
        updated_at: now(),
        error: None,
        attempts: 1,
    };
    store
        .record_intervals(&[iv(2, "failed"), iv(1, "done")])
        .await
        .expect("intervals");
    store
        .record_intervals(&[iv(2, "done")])
        .await
        .expect("again");
    let got = store.intervals("silver.p").await.expect("read");
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].start.as_str(), got[0].attempts),
        (day(1).as_str(), 1)
    );
    assert_eq!((got[1].status.as_str(), got[1].attempts), ("done", 2));
    store.clear_intervals("silver.p").await.expect("clear");
    assert!(store.intervals("silver.p").await.expect("read").is_empty());

    // Products: replaced as a whole.
    store
        .save_products(
            &[("a".into(), "{}".into()), ("b".into(), "{}".into())],
            "r1",
        )
        .await
        .expect("products");
    store
        .save_products(&[("b".into(), "{\"owner\":\"x\"}".into())], "r2")
        .await
        .expect("products");
    assert_eq!(
        store.products().await.expect("products"),
        vec![("b".to_string(), "{\"owner\":\"x\"}".to_string())]
    );

    // Deployments: replaced per table, read back in name order, forgotten when gone.
    let dep = |name: &str, fp: &str| crate::Deployment {
        name: name.into(),
        kind: "model".into(),
        fingerprint: fp.into(),
        materialized: "table".into(),
        columns: vec![crate::DeployedColumn {
            name: "id".into(),
            ty: "Int64".into(),
            nullable: false,
        }],
        run_id: "r1".into(),
        deployed_at: String::new(),
    };
    store
        .record_deployment(&dep("silver.b", "1"))
        .await
        .expect("deploy");
    store
        .record_deployment(&dep("silver.a", "1"))
        .await
        .expect("deploy");
    store
        .record_deployment(&dep("silver.b", "2"))
        .await
        .expect("deploy");
    let deployed = store.deployments().await.expect("deployments");
    assert_eq!(
        deployed
            .iter()
            .map(|d| (d.name.as_str(), d.fingerprint.as_str()))
            .collect::<Vec<_>>(),
        vec![("silver.a", "1"), ("silver.b", "2")]
    );
    assert!(!deployed[0].deployed_at.is_empty());
    assert_eq!(
        store
            .deployment("silver.b")
            .await
            .expect("one")
            .map(|d| d.columns),
        Some(dep("x", "").columns)
    );
    assert_eq!(
        store
            .forget_deployments_except(&["silver.b".to_string()])
            .await
            .expect("forget"),
        1
    );
    assert!(store.deployment("silver.a").await.expect("one").is_none());

    // Ticks: claimed once.
    let first = store
        .schedule_first_seen("nightly", &day(1))
        .await
        .expect("seen");
    assert_eq!(
        store
            .schedule_first_seen("nightly", &day(9))
            .await
            .expect("seen"),
        first
    );
    let tick = TickRecord {
        schedule: "nightly".into(),
        tick: day(2),
        status: "claimed".into(),
        run_id: None,
        claimed_by: "h:1".into(),
        claimed_at: now(),
    };
    assert!(store.claim_tick(&tick).await.expect("claim"));
    assert!(!store.claim_tick(&tick).await.expect("claim twice"));
    store
        .set_tick("nightly", &day(2), "success", Some("r1"))
        .await
        .expect("set");
    assert_eq!(
        store.last_tick("nightly").await.expect("last"),
        Some(day(2))
    );
    assert_eq!(store.last_tick("other").await.expect("last"), None);
    let ticks = store.ticks("nightly").await.expect("ticks");
    assert_eq!(
        (ticks[0].status.as_str(), ticks[0].run_id.as_deref()),
        ("success", Some("r1"))
    );
}

#[tokio::test]
async fn sqlite_round_trips_every_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/nested/state.db", dir.path().display());
    let store = StateStore::open(&url).await.expect("open");
    exercise(&store).await;
    // Reopening runs no migration twice.
    drop(store);
    StateStore::open(&url).await.expect("reopen");
}

/// Runs against the machine's PostgreSQL (127.0.0.1:5432, trust auth), in a
/// database made for this test and dropped afterwards.
#[tokio::test]
async fn postgres_round_trips_every_record() {
    let t = crate::testing::TestStore::new(crate::testing::Backend::Postgres).await;
    assert_eq!(t.store.backend(), Backend::Postgres);
    exercise(&t.store).await;
    t.cleanup().await;
}

#[test]
fn redacts_passwords() {
    assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    assert_eq!(redact("sqlite:///a/b"), "sqlite:///a/b");
}
