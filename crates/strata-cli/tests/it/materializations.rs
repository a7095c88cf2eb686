//! Each materialization's contents after first and later runs, the quarantine
//! accounting, and skipping of unchanged work — on a small project.

use crate::support::TestProject;

const CONFIG: &str = r#"
[project]
name = "mini"
max_parallel = 2

[sources.events]
format = "csv"
path = "data/events/*.csv"
columns = { id = "bigint", name = "string", amount = "double", day = "date" }

[sources.people]
format = "csv"
path = "data/people/*.csv"
"#;

fn mini() -> TestProject {
    let p = TestProject::new();
    p.write("strata.toml", CONFIG);
    p.write(
        "models/silver/events_all.sql",
        "select id, name, amount, day from bronze.events",
    );
    p.write(
        "models/silver/events_inc.sql",
        "/*\nmaterialized = \"incremental\"\n*/\nselect id, name, amount, day, _source from bronze.events",
    );
    p.write(
        "models/silver/events_latest.sql",
        "/*\nmaterialized = \"incremental\"\nstrategy = \"merge\"\nunique_key = [\"id\"]\n*/\n\
         select id, name, amount, day from (\n  select *, row_number() over (partition by id order by _source desc) as rn from bronze.events\n) where rn = 1",
    );
    p.write(
        "models/silver/people.sql",
        "/*\nmaterialized = \"scd2\"\nunique_key = [\"person_id\"]\n*/\n\
         select person_id, region from bronze.people where _source = (select max(_source) from bronze.people)",
    );
    p.write(
        "models/silver/event_errors.sql",
        "/* materialized = \"incremental\" */\nselect _source, _line, _error from bronze.events_quarantine",
    );
    p.write("models/gold/totals.sql", "/* materialized = \"view\" */\nselect name, sum(amount) as total from silver.events_latest group by name");
    p.write("models/gold/totals_tbl.sql", "select * from gold.totals");
    p.write(
        "data/events/e1.csv",
        "id,name,amount,day\n1,a,10.0,2024-01-01\n2,b,20.0,2024-01-01\n3,c,x,2024-01-01\n4,d\n",
    );
    p.write(
        "data/people/p1.csv",
        "person_id,region\n1,north\n2,south\n3,east\n",
    );
    p
}

fn status(tasks: &std::collections::BTreeMap<String, serde_json::Value>, t: &str) -> (String, i64) {
    (
        tasks[t]["status"].as_str().expect("status").to_string(),
        tasks[t]["rows_read"].as_i64().expect("rows"),
    )
}

#[test]
fn materializations_first_and_later_runs() {
    let p = mini();
    p.ok(&["run"]);

    // Ingest: 4 rows read, 2 loaded, 2 quarantined with file, line and error.
    let t = p.tasks();
    assert_eq!(t["bronze.events"]["rows_read"], 4);
    assert_eq!(t["bronze.events"]["rows_written"], 2);
    assert_eq!(t["bronze.events"]["rows_quarantined"], 2);
    assert_eq!(
        p.sql("select _source, _line, _error from bronze.events_quarantine order by _line"),
        vec![
            "_source,_line,_error",
            "data/events/e1.csv,4,column amount: `x` is not a valid double",
            "data/events/e1.csv,5,\"expected 4 fields, found 2\"",
        ]
    );
    assert_eq!(p.count("select count(*) from bronze.events where _batch_id is not null and _ingested_at is not null"), 2);
    assert_eq!(p.count("select count(*) from silver.events_all"), 2);
    assert_eq!(
        p.count("select count(*) from silver.event_errors"),
        2,
        "models can read quarantine tables"
    );
    assert_eq!(p.count("select count(*) from silver.events_inc"), 2);
    assert_eq!(p.count("select count(*) from silver.events_latest"), 2);
    assert_eq!(
        p.count("select count(*) from silver.people where is_current and valid_to is null"),
        3
    );
    assert_eq!(
        p.sql("select total from gold.totals_tbl where name = 'b'"),
        vec!["total", "20.0"]
    );

    // A second run with no new files changes nothing.
    p.ok(&["run"]);
    let t = p.tasks();
    assert_eq!(status(&t, "bronze.events"), ("skipped".into(), 0));
    assert_eq!(status(&t, "silver.events_inc"), ("skipped".into(), 0));
    assert_eq!(status(&t, "silver.events_latest"), ("skipped".into(), 0));
    assert_eq!(t["silver.events_inc"]["message"], "0 new rows upstream");
    assert_eq!(status(&t, "silver.events_all").0, "skipped");
    assert_eq!(status(&t, "silver.people").0, "skipped");
    assert_eq!(status(&t, "gold.totals_tbl").0, "skipped");
    assert_eq!(p.count("select count(*) from silver.events_inc"), 2);

    // New files: an update of id 2 and a new id 4; a changed and a deleted person.
    p.write(
        "data/events/e2.csv",
        "id,name,amount,day\n2,b,25.0,2024-01-02\n4,d,40.0,2024-01-02\n",
    );
    p.write(
        "data/people/p2.csv",
        "person_id,region\n1,west\n3,east\n4,north\n",
    );
    p.ok(&["run"]);
    let t = p.tasks();
    assert_eq!(status(&t, "bronze.events"), ("success".into(), 2));
    assert_eq!(
        status(&t, "silver.events_inc"),
        ("success".into(), 2),
        "only the new rows are read"
    );
    assert_eq!(status(&t, "silver.events_latest"), ("success".into(), 2));
    assert_eq!(p.count("select count(*) from silver.events_inc"), 4);
    assert_eq!(
        p.count("select count(*) from silver.event_errors"),
        2,
        "no new bad rows, nothing appended"
    );
    assert_eq!(
        p.sql("select id, amount from silver.events_latest order by id"),
        vec!["id,amount", "1,10.0", "2,25.0", "4,40.0"]
    );
    assert_eq!(
        p.sql("select total from gold.totals_tbl where name = 'b'"),
        vec!["total", "25.0"]
    );
    assert_eq!(
        p.sql("select person_id, region, is_current, valid_to is null as open from silver.people order by person_id, valid_from, is_current"),
        vec![
            "person_id,region,is_current,open",
            "1,north,false,false",
            "1,west,true,true",
            "2,south,false,false",
            "3,east,true,true",
            "4,north,true,true",
        ]
    );

    // Person 2 comes back: a new current row; the old one stays closed once.
    p.write(
        "data/people/p3.csv",
        "person_id,region\n1,west\n2,south\n3,east\n4,north\n",
    );
    p.ok(&["run"]);
    assert_eq!(
        p.count("select count(*) from silver.people where person_id = 2"),
        2
    );
    assert_eq!(
        p.count("select count(*) from silver.people where person_id = 2 and is_current"),
        1
    );
    assert_eq!(
        p.count("select count(*) from silver.people where person_id = 2 and valid_to is not null"),
        1
    );
    assert_eq!(
        p.count("select count(*) from silver.people where is_current"),
        4
    );

    // A full refresh rebuilds incremental models from everything.
    p.ok(&["run", "--full-refresh", "--select", "silver.events_inc"]);
    assert_eq!(p.count("select count(*) from silver.events_inc"), 4);
}

#[test]
fn selection_runs_only_what_is_selected() {
    let p = mini();
    let out = p.ok(&["run", "--select", "+silver.events_all"]);
    assert!(out.contains("silver.events_all"), "{out}");
    let t = p.tasks();
    assert_eq!(
        t.keys().cloned().collect::<Vec<_>>(),
        vec!["bronze.events".to_string(), "silver.events_all".to_string()]
    );
    // Selecting a model whose upstream was never built fails with a hint.
    let out = p.strata(&["run", "--select", "silver.people"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bronze.people has not been built yet"),
        "{err}"
    );
}

#[test]
fn on_bad_rows_fail_loads_nothing_and_names_the_line() {
    let p = mini();
    p.write(
        "strata.toml",
        &CONFIG.replace(
            "[sources.people]",
            "on_bad_rows = \"fail\"\n\n[sources.people]",
        ),
    );
    let out = p.strata(&["run", "--select", "bronze.events"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("data/events/e1.csv:4: column amount"), "{err}");
    let out = p.strata(&["sql", "select count(*) from bronze.events"]);
    assert_eq!(out.status.code(), Some(2), "nothing was committed");
}

/// Forgets the ingest manifest, as if the run had died before recording it.
fn forget_manifest(p: &TestProject) {
    let db = p.path().join(".strata/state.db");
    let out = std::process::Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('delete from ingested_files'); c.commit()"])
        .arg(&db)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_crash_between_commits_loads_each_row_once() {
    // Died after the bronze commit, before the manifest was recorded: the
    // manifest is repaired from the bronze commit's own provenance.
    let p = mini();
    p.ok(&["run", "--select", "bronze.events"]);
    forget_manifest(&p);
    p.ok(&["run", "--select", "bronze.events"]);
    assert_eq!(p.tasks()["bronze.events"]["status"], "skipped");
    assert_eq!(p.count("select count(*) from bronze.events"), 2);
    assert_eq!(p.count("select count(*) from bronze.events_quarantine"), 2);

    // Died after the quarantine commit, before the bronze commit: the rerun
    // replaces the quarantine rows of those files instead of adding more.
    let p = mini();
    p.ok(&["run", "--select", "bronze.events"]);
    forget_manifest(&p);
    std::fs::remove_dir_all(p.path().join("lake/bronze/events")).expect("undo the bronze commit");
    p.ok(&["run", "--select", "bronze.events"]);
    assert_eq!(p.count("select count(*) from bronze.events"), 2);
    assert_eq!(p.count("select count(*) from bronze.events_quarantine"), 2);
    let t = p.tasks();
    assert_eq!(t["bronze.events"]["rows_read"], 4);
}

#[test]
fn a_merge_model_refuses_null_and_shared_keys_and_names_the_first_duplicate() {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        "[project]\nname = \"keys\"\n[sources.ev]\nformat = \"csv\"\npath = \"data/*.csv\"\ncolumns = { id = \"bigint\", v = \"bigint\" }\n",
    );
    let model = |filter: &str| {
        format!(
            "/*\nmaterialized = \"incremental\"\nstrategy = \"merge\"\nunique_key = [\"id\"]\n*/\nselect id, v from bronze.ev {filter}"
        )
    };
    p.write("data/a.csv", "id,v\n1,10\n2,20\n2,21\n,30\n");
    let fails = |p: &TestProject| {
        let out = p.strata(&["run"]);
        assert!(!out.status.success());
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    // A null key first.
    p.write("models/silver/latest.sql", &model(""));
    let out = fails(&p);
    assert!(out.contains("1 rows have a null unique_key (id)"), "{out}");
    // Then a shared one, shown.
    p.write("models/silver/latest.sql", &model("where id is not null"));
    let out = fails(&p);
    assert!(out.contains("several rows share unique_key (id)"), "{out}");
    assert!(out.contains("| 2  | 2 |"), "{out}");
    // Nothing was published.
    assert!(!p.path().join("lake/silver/latest/_delta_log").exists());
    p.write(
        "models/silver/latest.sql",
        &model("where id is not null and v <> 21"),
    );
    p.ok(&["run"]);
    assert_eq!(p.count("select count(*) from silver.latest"), 2);
}

#[test]
fn an_accumulating_model_adds_each_run_to_its_totals() {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        "[project]\nname = \"acc\"\n[sources.sales]\nformat = \"csv\"\npath = \"data/*.csv\"\ncolumns = { region = \"string\", amount = \"decimal(15,2)\", qty = \"bigint\" }\n",
    );
    let acc = |key: &str, sql: &str| {
        format!(
            "/*\nmaterialized = \"incremental\"\nstrategy = \"accumulate\"\nunique_key = [{key}]\n*/\n{sql}"
        )
    };
    p.write(
        "models/gold/by_region.sql",
        &acc(
            "\"region\"",
            "select region, cast(sum(amount) as decimal(15,2)) as amount, count(*) as orders from bronze.sales group by region",
        ),
    );
    p.write(
        "models/gold/total.sql",
        &acc("", "select sum(qty) as qty from bronze.sales"),
    );
    // Read through a table model, which each run rewrites.
    p.write("models/silver/sales_t.sql", "select * from bronze.sales");
    p.write(
        "models/gold/by_region_t.sql",
        &acc(
            "\"region\"",
            "select region, count(*) as orders from silver.sales_t group by region",
        ),
    );
    p.write(
        "data/a.csv",
        "region,amount,qty\nnorth,10.50,1\nsouth,20.00,2\nnorth,1.25,3\n",
    );
    p.ok(&["run"]);
    let by_region = |p: &TestProject| {
        p.sql("select region, amount, orders from gold.by_region order by region")
    };
    assert_eq!(
        by_region(&p),
        vec!["region,amount,orders", "north,11.75,2", "south,20.00,1"]
    );

    p.write(
        "data/b.csv",
        "region,amount,qty\nnorth,0.25,4\neast,5.00,5\n",
    );
    p.ok(&["run"]);
    let t = p.tasks();
    assert_eq!(
        t["gold.by_region"]["message"],
        "accumulated 2 new upstream rows: 1 inserted, 1 updated"
    );
    assert_eq!(t["gold.by_region"]["rows_read"], 2);
    // Only the keys the new rows touch are written (north updated, east
    // inserted); south is left where it is.
    assert_eq!(t["gold.by_region"]["rows_written"], 2);
    assert_eq!(
        by_region(&p),
        vec![
            "region,amount,orders",
            "east,5.00,1",
            "north,12.00,3",
            "south,20.00,1"
        ]
    );
    // The table keeps its column types.
    assert_eq!(
        p.sql("select arrow_typeof(amount) as t from gold.by_region limit 1"),
        vec!["t", "\"Decimal128(15, 2)\""]
    );
    // Without a key, one row.
    assert_eq!(p.sql("select qty from gold.total"), vec!["qty", "15"]);
    // A rewritten upstream is read in full again, not added twice.
    assert_eq!(
        t["gold.by_region_t"]["message"],
        "rebuilt in full: silver.sales_t was rewritten since the last build"
    );
    assert_eq!(
        p.sql("select region, orders from gold.by_region_t order by region"),
        vec!["region,orders", "east,1", "north,3", "south,1"]
    );

    // Nothing new: nothing added.
    p.ok(&["run"]);
    assert_eq!(status(&p.tasks(), "gold.by_region").0, "skipped");
    assert_eq!(p.sql("select qty from gold.total"), vec!["qty", "15"]);

    // A column that cannot be added up is refused by name once rows accumulate.
    p.write(
        "models/gold/names.sql",
        &acc(
            "\"region\"",
            "select region, max(cast(qty as string)) as last_qty from bronze.sales group by region",
        ),
    );
    p.ok(&["run"]);
    p.write("data/c.csv", "region,amount,qty\nwest,1.00,6\n");
    let out = p.strata(&["run"]);
    assert!(!out.status.success());
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        err.contains("names.sql: strategy = \"accumulate\" adds up every column not in unique_key, and `last_qty` is Utf8"),
        "{err}"
    );
    assert_eq!(
        by_region(&p),
        vec![
            "region,amount,orders",
            "east,5.00,1",
            "north,12.00,3",
            "south,20.00,1",
            "west,1.00,1"
        ]
    );
}

#[test]
fn tables_get_a_delta_checkpoint_every_ten_commits() {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        "[project]\nname = \"cp\"\n[sources.sales]\nformat = \"csv\"\npath = \"data/*.csv\"\ncolumns = { region = \"string\", qty = \"bigint\" }\n",
    );
    p.write(
        "models/gold/total.sql",
        "/*\nmaterialized = \"incremental\"\nstrategy = \"accumulate\"\nunique_key = [\"region\"]\n*/\nselect region, sum(qty) as qty from bronze.sales group by region",
    );
    let log = p.path().join("lake/gold/total/_delta_log");
    // Version 0 is the first build; each later file adds one commit.
    for i in 0..=10 {
        p.write(&format!("data/{i:02}.csv"), "region,qty\nnorth,1\n");
        p.ok(&["run"]);
        assert_eq!(
            log.join("00000000000000000010.checkpoint.parquet").exists(),
            i == 10,
            "after run {i}"
        );
    }
    assert!(log.join("_last_checkpoint").exists());
    // Read through the checkpoint: every run added its row.
    assert_eq!(p.sql("select qty from gold.total"), vec!["qty", "11"]);
}
