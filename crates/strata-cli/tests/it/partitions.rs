//! Partitioned models (`strategy = "replace_range"`): a run replaces exactly
//! its intervals, lookback picks up late data, backfills run only what is
//! missing or failed, and `strata status` shows the gaps.

use crate::support::TestProject;

const CONFIG: &str = "[project]\nname = \"parts\"\nmax_parallel = 2\n[sources.ev]\nformat = \"csv\"\npath = \"data/*.csv\"\ncolumns = { id = \"bigint\", at = \"timestamp\", amount = \"bigint\" }\n";

fn events_model(lookback: u32, amount: &str) -> String {
    format!(
        "/*\nmaterialized = \"incremental\"\nstrategy = \"replace_range\"\npartition_by = \"day\"\ngrain = \"day\"\nlookback = {lookback}\n[[checks]]\nexpression = \"amount >= 0\"\nseverity = \"error\"\n*/\nselect id, cast(at as date) as day, at, {amount} as amount from bronze.ev\nwhere at >= :start and at < :end\n"
    )
}

fn per_day(p: &TestProject) -> Vec<String> {
    p.sql("select cast(day as varchar) as day, count(*) as n from silver.events group by day order by day")
}

#[test]
fn a_run_replaces_its_intervals_and_lookback_picks_up_late_rows() {
    let p = TestProject::new();
    p.write("strata.toml", CONFIG);
    p.write("models/silver/events.sql", &events_model(1, "amount"));
    p.write(
        "data/ev_1.csv",
        "id,at,amount\n1,2024-01-01T10:00:00,5\n2,2024-01-01T11:00:00,5\n3,2024-01-02T09:00:00,1\n4,2024-01-02T10:00:00,1\n5,2024-01-02T11:00:00,1\n",
    );
    p.ok(&["validate"]);
    p.ok(&["run", "--start", "2024-01-01", "--end", "2024-01-03"]);
    assert_eq!(per_day(&p), vec!["day,n", "2024-01-01,2", "2024-01-02,3"]);
    let t = &p.tasks()["silver.events"];
    assert_eq!(t["kind"], "replace_range");
    let v1 = t["delta_version"].as_i64().expect("version");

    // A late row for Jan 2 lands with Jan 3's data; Jan 3's run looks back one day.
    p.write(
        "data/ev_2.csv",
        "id,at,amount\n6,2024-01-02T23:00:00,1\n7,2024-01-03T08:00:00,2\n8,2024-01-03T09:00:00,2\n",
    );
    p.ok(&["run", "--start", "2024-01-03", "--end", "2024-01-04"]);
    assert_eq!(
        per_day(&p),
        vec!["day,n", "2024-01-01,2", "2024-01-02,4", "2024-01-03,2"]
    );
    let t = &p.tasks()["silver.events"];
    assert_eq!(
        t["delta_version"].as_i64(),
        Some(v1 + 1),
        "one commit per run"
    );
    assert!(
        t["message"]
            .as_str()
            .unwrap_or("")
            .contains("late data in 1"),
        "{t}"
    );
    // Jan 1 was not touched: its rows still come from the first run's files.
    assert_eq!(
        p.count(
            "select count(*) from silver.events where day = date '2024-01-01' and id in (1, 2)"
        ),
        2
    );
    let status = p.ok(&["status"]);
    assert!(
        status.contains("intervals of silver.events (day) from 2023-12-31T00:00:00.000000Z to 2024-01-04T00:00:00.000000Z: 3 done, 1 late, 0 failed, 0 missing"),
        "{status}"
    );
}

#[test]
fn rows_outside_the_interval_are_not_written_and_null_times_fail() {
    let p = TestProject::new();
    p.write("strata.toml", CONFIG);
    // No :start/:end filter: the task keeps only its interval's rows.
    p.write(
        "models/silver/events.sql",
        "/*\nmaterialized = \"incremental\"\nstrategy = \"replace_range\"\npartition_by = \"at\"\ngrain = \"hour\"\n*/\nselect id, at from bronze.ev\n",
    );
    p.write(
        "data/ev.csv",
        "id,at,amount\n1,2024-01-01T10:15:00,1\n2,2024-01-01T11:15:00,1\n3,2024-01-01T12:15:00,1\n",
    );
    p.ok(&[
        "run",
        "--start",
        "2024-01-01T11:00:00Z",
        "--end",
        "2024-01-01T12:00:00Z",
    ]);
    assert_eq!(p.sql("select id from silver.events"), vec!["id", "2"]);
    p.write("data/ev_null.csv", "id,at,amount\n4,,1\n");
    let out = p.strata(&[
        "run",
        "--start",
        "2024-01-01T10:00:00Z",
        "--end",
        "2024-01-01T11:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("models/silver/events.sql: 1 rows have a null `at`"),
        "{err}"
    );
    assert_eq!(
        p.sql("select id from silver.events"),
        vec!["id", "2"],
        "nothing published"
    );
}

#[test]
fn backfill_runs_missing_and_failed_intervals_only() {
    let p = TestProject::new();
    p.write("strata.toml", CONFIG);
    p.write("models/silver/events.sql", &events_model(0, "amount"));
    let mut csv = String::from("id,at,amount\n");
    for d in 1..=30 {
        for h in 0..3 {
            // Jan 15 holds a negative amount: its interval fails its check.
            let amount = if d == 15 && h == 0 { -1 } else { 1 };
            csv.push_str(&format!(
                "{},2024-01-{d:02}T{:02}:00:00,{amount}\n",
                d * 10 + h,
                h * 8
            ));
        }
    }
    p.write("data/ev.csv", &csv);
    let args = [
        "backfill",
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-31",
        "--select",
        "+silver.events",
        "--parallel",
        "2",
    ];
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let plan = p.ok(&dry);
    assert!(plan.contains("dry run: nothing was run"), "{plan}");
    assert!(
        plan.lines()
            .any(|l| l.contains("silver.events") && l.contains("┆ day ") && l.contains(" 30 ")),
        "{plan}"
    );
    assert!(
        !p.path().join("lake/silver/events").exists(),
        "a dry run writes nothing"
    );

    let out = p.strata(&args);
    assert_eq!(out.status.code(), Some(1), "Jan 15 fails its check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("│ silver.events") && l.contains(" 29 ") && l.contains(" 1 ")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("2024-01-15T00:00:00.000000Z")
                && l.contains("expression: amount >= 0")
                && l.contains("fail")),
        "the failed check is shown with its interval: {stdout}"
    );
    assert_eq!(p.count("select count(*) from silver.events"), 87);
    let status = p.ok(&["status"]);
    assert!(
        status.contains("29 done, 0 late, 1 failed, 0 missing"),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.contains("2024-01-15T00:00:00.000000Z") && l.contains("failed")),
        "{status}"
    );

    // Fix the model; the repeat runs only Jan 15.
    p.write(
        "models/silver/events.sql",
        &events_model(0, "greatest(amount, 0)"),
    );
    let again = p.ok(&args);
    assert!(
        again
            .lines()
            .any(|l| l.starts_with("│ silver.events") && l.contains(" 29 ") && l.contains(" 1 ")),
        "{again}"
    );
    let tasks = p.tasks();
    let ran: Vec<&String> = tasks
        .keys()
        .filter(|k| k.starts_with("silver.events["))
        .collect();
    assert_eq!(ran, vec!["silver.events[2024-01-15]"]);
    assert_eq!(p.count("select count(*) from silver.events"), 90);
    assert_eq!(p.count("select count(distinct day) from silver.events"), 30);

    // Idempotent: nothing left to do.
    let done = p.ok(&args);
    assert!(done.contains("nothing to backfill"), "{done}");
    assert_eq!(p.count("select count(*) from silver.events"), 90);
    let status = p.ok(&["status"]);
    assert!(
        status.contains("30 done, 0 late, 0 failed, 0 missing"),
        "{status}"
    );
}

#[test]
fn status_shows_missing_intervals_as_gaps() {
    let p = TestProject::new();
    p.write("strata.toml", CONFIG);
    p.write("models/silver/events.sql", &events_model(0, "amount"));
    p.write(
        "data/ev.csv",
        "id,at,amount\n1,2024-01-01T10:00:00,1\n2,2024-01-05T10:00:00,1\n",
    );
    p.ok(&["run", "--start", "2024-01-01", "--end", "2024-01-02"]);
    p.ok(&["run", "--start", "2024-01-05", "--end", "2024-01-06"]);
    let status = p.ok(&["status"]);
    assert!(
        status.contains("2 done, 0 late, 0 failed, 3 missing"),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.contains("2024-01-02T00:00:00.000000Z")
                && l.contains("2024-01-05T00:00:00.000000Z")
                && l.contains("missing")
                && l.contains(" 3 ")),
        "{status}"
    );
    assert!(status.contains("fill them: strata backfill"), "{status}");
}

#[test]
fn a_source_time_column_shows_days_without_data_and_late_rows() {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        "[project]\nname = \"src\"\n[sources.ev]\nformat = \"csv\"\npath = \"data/*.csv\"\ntime_column = \"at\"\ncolumns = { id = \"bigint\", at = \"timestamp\" }\n",
    );
    p.write(
        "data/1.csv",
        "id,at\n1,2024-01-01T10:00:00\n2,2024-01-02T10:00:00\n3,2024-01-04T10:00:00\n",
    );
    p.ok(&["run"]);
    let status = p.ok(&["status"]);
    assert!(
        status.contains("intervals of bronze.ev (day) from 2024-01-01T00:00:00.000000Z to 2024-01-05T00:00:00.000000Z: 3 done, 0 late, 0 failed, 1 missing"),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.contains("2024-01-03T00:00:00.000000Z") && l.contains("missing")),
        "{status}"
    );
    // A later file with a row for Jan 2: late data.
    p.write("data/2.csv", "id,at\n4,2024-01-02T23:00:00\n");
    p.ok(&["run"]);
    let status = p.ok(&["status"]);
    assert!(
        status.contains("2 done, 1 late, 0 failed, 1 missing"),
        "{status}"
    );
}
