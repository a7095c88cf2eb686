//! Data intervals: `:start` and `:end` in a model's SQL stand for the run's
//! `--start`/`--end`; a new interval rebuilds the model, the same one skips it.

use crate::support::TestProject;

#[test]
fn start_and_end_bind_the_run_interval() {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        "[project]\nname = \"iv\"\n[sources.ev]\nformat = \"csv\"\npath = \"data/*.csv\"\ncolumns = { id = \"bigint\", at = \"timestamp\", day = \"date\" }\n",
    );
    p.write(
        "data/e.csv",
        "id,at,day\n1,2024-01-01T10:00:00,2024-01-01\n2,2024-01-02T10:00:00,2024-01-02\n3,2024-01-02T23:00:00,2024-01-02\n",
    );
    p.write(
        "models/gold/window.sql",
        "-- ':start' in a string or a comment is left alone\nselect count(*) as n, min(id) as first, ':start' as label\nfrom bronze.ev where at >= :start and at < :end and day >= :start",
    );
    p.ok(&["validate"]);

    // Without an interval the model cannot run, and says why.
    let out = p.strata(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("give the run its data interval with --start and --end")
    );

    p.ok(&["run", "--start", "2024-01-02", "--end", "2024-01-03"]);
    assert_eq!(
        p.sql("select n, first, label from gold.window"),
        vec!["n,first,label", "2,2,:start"]
    );
    let runs = p.ok(&["runs", "--format", "json", "--limit", "1"]);
    assert!(
        runs.contains("\"interval_start\":\"2024-01-02T00:00:00.000000Z\""),
        "{runs}"
    );

    p.ok(&["run", "--start", "2024-01-02", "--end", "2024-01-03"]);
    assert_eq!(
        p.tasks()["gold.window"]["status"],
        "skipped",
        "same interval, same inputs"
    );

    p.ok(&[
        "run",
        "--start",
        "2024-01-01T00:00:00Z",
        "--end",
        "2024-01-02T00:00:00Z",
    ]);
    assert_eq!(
        p.tasks()["gold.window"]["status"],
        "success",
        "a new interval rebuilds"
    );
    assert_eq!(
        p.sql("select n, first from gold.window"),
        vec!["n,first", "1,1"]
    );

    assert_eq!(
        p.strata(&["run", "--start", "2024-01-03", "--end", "2024-01-01"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn views_cannot_read_the_interval() {
    let p = TestProject::new();
    p.write("strata.toml", "[project]\nname = \"iv\"\n");
    p.write(
        "models/gold/v.sql",
        "/* materialized = \"view\" */\nselect 1 as x where now() >= :start",
    );
    let out = p.strata(&["validate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a view cannot read :start or :end"));
}
