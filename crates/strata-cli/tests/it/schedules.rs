//! `strata serve --once-at`: cron ticks with a time zone, catch-up after
//! downtime (each tick once), and the file sensor — without waiting for time.

use crate::support::TestProject;

fn runs(p: &TestProject) -> Vec<serde_json::Value> {
    p.ok(&["runs", "--format", "json", "--limit", "100"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

#[test]
fn a_nightly_schedule_catches_up_missed_nights_once_each() {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        "[project]\nname = \"sched\"\n[sources.ev]\nformat = \"csv\"\npath = \"data/*.csv\"\ncolumns = { id = \"bigint\", at = \"timestamp\" }\n\n[schedules.nightly]\ncron = \"0 2 * * *\"\ntimezone = \"Europe/Berlin\"\nselect = \"+gold.daily\"\nstart = \"2024-01-02\"\n",
    );
    p.write(
        "models/silver/events.sql",
        "/*\nmaterialized = \"incremental\"\nstrategy = \"replace_range\"\npartition_by = \"day\"\n*/\nselect id, cast(at as date) as day from bronze.ev where at >= :start and at < :end\n",
    );
    p.write(
        "models/gold/daily.sql",
        "select day, count(*) as n from silver.events group by day",
    );
    let mut csv = String::from("id,at\n");
    for d in 1..=6 {
        csv.push_str(&format!("{d},2024-01-{d:02}T12:00:00\n"));
    }
    p.write("data/ev.csv", &csv);
    p.ok(&["validate"]);

    // Down until Jan 4 noon: the 02:00 Berlin ticks of Jan 2, 3 and 4 are due,
    // each covering the day before.
    let out = p.ok(&["serve", "--once-at", "2024-01-04T12:00:00Z"]);
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("schedule:nightly"))
            .count(),
        3,
        "{out}"
    );
    assert!(
        out.contains("schedule:nightly [2024-01-01T01:00:00.000000Z, 2024-01-02T01:00:00.000000Z)"),
        "02:00 in Berlin is 01:00 UTC in winter: {out}"
    );
    assert_eq!(
        p.sql("select cast(day as varchar) as day, n from gold.daily order by day"),
        vec!["day,n", "2024-01-01,1", "2024-01-02,1", "2024-01-03,1"]
    );
    let r = runs(&p);
    assert_eq!(r.len(), 3);
    assert!(
        r.iter().all(|r| r["trigger"] == "schedule:nightly"),
        "{r:?}"
    );

    // The same moment again: nothing is due; nothing runs twice.
    let again = p.ok(&["serve", "--once-at", "2024-01-04T12:00:00Z"]);
    assert!(again.contains("nothing due"), "{again}");
    assert_eq!(runs(&p).len(), 3);

    // Two more nights later.
    p.ok(&["serve", "--once-at", "2024-01-06T01:30:00Z"]);
    assert_eq!(runs(&p).len(), 5);
    assert_eq!(p.count("select count(*) from gold.daily"), 5);
    let status = p.ok(&["status"]);
    assert!(
        status.contains("5 done, 0 late, 0 failed, 0 missing"),
        "{status}"
    );
}

#[test]
fn a_sensor_runs_the_downstream_when_new_files_land() {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        "[project]\nname = \"sensor\"\n[sources.ev]\nformat = \"csv\"\npath = \"data/*.csv\"\n\n[schedules.on_events]\non_new_files = \"ev\"\npoll = \"30s\"\n",
    );
    p.write(
        "models/silver/total.sql",
        "select count(*) as n from bronze.ev",
    );
    p.write("data/a.csv", "id\n1\n2\n");
    let out = p.ok(&["serve", "--once-at", "2024-01-01T00:00:00Z"]);
    assert!(out.contains("sensor:on_events: run"), "{out}");
    assert_eq!(p.count("select n from silver.total"), 2);

    let idle = p.ok(&["serve", "--once-at", "2024-01-01T00:01:00Z"]);
    assert!(idle.contains("nothing due"), "no new files: {idle}");
    assert_eq!(runs(&p).len(), 1);

    p.write("data/b.csv", "id\n3\n");
    p.ok(&["serve", "--once-at", "2024-01-01T00:02:00Z"]);
    assert_eq!(p.count("select n from silver.total"), 3);
    assert_eq!(runs(&p)[0]["trigger"], "sensor:on_events");
}

#[test]
fn bad_schedules_are_located() {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        "[project]\nname = \"bad\"\n[sources.ev]\nformat = \"csv\"\npath = \"data/*.csv\"\n\n[schedules.a]\ncron = \"0 25 * * *\"\n\n[schedules.b]\ncron = \"0 2 * * *\"\ntimezone = \"Europe/Berln\"\n\n[schedules.c]\non_new_files = \"evs\"\n",
    );
    let out = p.strata(&["validate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("strata.toml:8:8: bad cron expression `0 25 * * *`"),
        "{err}"
    );
    assert!(
        err.contains("strata.toml:12:12: unknown time zone `Europe/Berln`"),
        "{err}"
    );
    assert!(err.contains("did you mean `Europe/Berlin`?"), "{err}");
    assert!(
        err.contains("strata.toml:15:16: unknown source `evs`"),
        "{err}"
    );
}
