//! `strata optimize` and `strata vacuum`: small files compacted and old ones
//! deleted without changing a row, without models reading the tables taking
//! old rows for new, and without losing rows they have not read yet.

use std::path::Path;
use std::process::Command;

use crate::support::TestProject;

const CONFIG: &str = r#"
[project]
name = "upkeep"

[sources.events]
format = "csv"
path = "data/*.csv"
columns = { id = "bigint", name = "string", amount = "bigint" }
"#;

fn project() -> TestProject {
    let p = TestProject::new();
    p.write("strata.toml", CONFIG);
    // Every incremental kind, and a table rebuilt from its inputs.
    p.write(
        "models/silver/events_inc.sql",
        "/* materialized = \"incremental\" */\nselect id, name, amount from bronze.events",
    );
    p.write(
        "models/silver/events_latest.sql",
        "/*\nmaterialized = \"incremental\"\nstrategy = \"merge\"\nunique_key = [\"id\"]\n*/\nselect id, name, amount from bronze.events",
    );
    p.write(
        "models/gold/by_name.sql",
        "/*\nmaterialized = \"incremental\"\nstrategy = \"accumulate\"\nunique_key = [\"name\"]\n*/\nselect name, sum(amount) as amount, count(*) as n from silver.events_inc group by name",
    );
    p.write(
        "models/gold/summary.sql",
        "select count(*) as n, sum(amount) as amount from silver.events_inc",
    );
    p
}

/// Lands file `i` of three rows (ids 3i+1 … 3i+3).
fn land(p: &TestProject, i: i64) {
    let rows: Vec<String> = (1..=3)
        .map(|k| {
            let id = 3 * i + k;
            format!("{id},n{},{}", id % 2, id * 10)
        })
        .collect();
    p.write(
        &format!("data/e{i:02}.csv"),
        &format!("id,name,amount\n{}\n", rows.join("\n")),
    );
}

/// The Parquet files in a table's folder.
fn parquet_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = e.path();
            if path.is_dir() && !path.ends_with("_delta_log") {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "parquet") {
                n += 1;
            }
        }
    }
    n
}

/// What a Python script prints about a table (its folder the argument),
/// with the independent reader, Python `deltalake`.
fn python(script: &str, table: &Path) -> String {
    let script = format!(
        "import sys, os, deltalake\n{script}\nsys.stdout.flush()\nos._exit(0)  # the reader's threads can abort the interpreter's teardown\n"
    );
    let out = Command::new("python3")
        .args(["-c", &script, table.to_str().expect("utf8")])
        .output()
        .expect("python3 runs (scripts/test.sh installs deltalake)");
    assert!(
        out.status.success(),
        "python deltalake failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The data files of a table's current version.
fn active_files(table: &Path) -> usize {
    python(
        "print(len(deltalake.DeltaTable(sys.argv[1]).file_uris()))",
        table,
    )
    .trim()
    .parse()
    .expect("a count")
}

/// A table's rows: `id,amount`, sorted.
fn read_back(table: &Path) -> Vec<String> {
    let script = "t = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table().to_pylist()\nfor r in sorted((r['id'], r['amount']) for r in t):\n    print(f'{r[0]},{r[1]}')";
    python(script, table).lines().map(str::to_string).collect()
}

fn csv_rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn optimize_and_vacuum_keep_every_row_and_every_reader_right() {
    let p = project();
    for i in 0..3 {
        land(&p, i);
        p.ok(&["run"]);
    }
    // Three appends: three files each in bronze and silver.
    let lake = p.path().join("lake");
    assert_eq!(parquet_files(&lake.join("bronze/events")), 3);
    assert_eq!(parquet_files(&lake.join("silver/events_inc")), 3);

    // Rows land in bronze that no model has read yet; then bronze is compacted.
    land(&p, 3);
    p.ok(&["run", "--select", "bronze.events"]);
    let out = p.ok(&["optimize", "--select", "bronze.events", "--format", "csv"]);
    let rows = csv_rows(&out);
    let bronze = rows
        .iter()
        .find(|r| r[0] == "bronze.events")
        .expect("bronze.events optimized");
    assert_eq!(
        (bronze[1].as_str(), bronze[2].as_str(), bronze[3].as_str()),
        ("4", "4", "1"),
        "{out}"
    );
    assert!(
        rows.iter().all(|r| r[0].starts_with("bronze.")),
        "only the selection: {out}"
    );

    // The compacted file is written as ingest writes bronze: uncompressed,
    // no min/max on text columns (DataFusion misuses them), typed ones kept.
    let stats = python(
        "import pyarrow.parquet as pq\n\
         u = deltalake.DeltaTable(sys.argv[1]).file_uris()[0]\n\
         f = pq.ParquetFile(u.removeprefix('file://')).metadata\n\
         rg = f.row_group(0)\n\
         for i in range(rg.num_columns):\n    \
             c = rg.column(i)\n    \
             s = c.statistics\n    \
             print(c.path_in_schema, c.compression, bool(s is not None and s.has_min_max))",
        &lake.join("bronze/events"),
    );
    assert!(stats.contains("name UNCOMPRESSED False"), "{stats}");
    assert!(stats.contains("id UNCOMPRESSED True"), "{stats}");

    // A vacuum now (no retention) must keep the unread rows' original files.
    let out = p.ok(&[
        "vacuum",
        "--select",
        "bronze.events",
        "--retain-hours",
        "0",
        "--unsafe-retention",
        "--format",
        "json",
    ]);
    let bronze: serde_json::Value = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .find(|v| v["table"] == "bronze.events")
        .expect("bronze.events vacuumed");
    assert_eq!(bronze["kept_versions"], serde_json::json!([3]), "{out}");

    // The readers take exactly the new rows: nothing twice, nothing lost.
    p.ok(&["run"]);
    let t = p.tasks();
    assert_eq!(t["silver.events_inc"]["rows_read"], 3, "{t:?}");
    assert_eq!(t["silver.events_latest"]["rows_read"], 3, "{t:?}");
    assert_eq!(
        p.sql("select count(*) as n, count(distinct id) as ids, sum(amount) as amount from silver.events_inc"),
        vec!["n,ids,amount", "12,12,780"]
    );
    assert_eq!(p.count("select count(*) from silver.events_latest"), 12);
    assert_eq!(
        p.sql("select name, amount, n from gold.by_name order by name"),
        vec!["name,amount,n", "n0,420,6", "n1,360,6"]
    );
    assert_eq!(
        p.sql("select n, amount from gold.summary"),
        vec!["n,amount", "12,780"]
    );

    // Compacting everything changes no row: the next run finds nothing new
    // and rebuilds nothing.
    let out = p.ok(&["optimize"]);
    assert!(out.contains("silver.events_inc"), "{out}");
    assert!(out.contains("tables compacted"), "{out}");
    assert_eq!(
        parquet_files(&lake.join("silver/events_inc")),
        5,
        "4 old + 1 compacted"
    );
    p.ok(&["run"]);
    let t = p.tasks();
    for model in [
        "silver.events_inc",
        "silver.events_latest",
        "gold.by_name",
        "gold.summary",
    ] {
        assert_eq!(t[model]["status"], "skipped", "{model}: {t:?}");
    }

    // A dry run lists and deletes nothing; the real one deletes the files
    // OPTIMIZE replaced, and every reader still sees the same rows.
    let before = read_back(&lake.join("silver/events_inc"));
    assert_eq!(before.len(), 12);
    let dry = p.ok(&[
        "vacuum",
        "--retain-hours",
        "0",
        "--unsafe-retention",
        "--dry-run",
        "--format",
        "csv",
    ]);
    let listed = dry
        .lines()
        .filter(|l| l.starts_with("silver.events_inc,"))
        .count();
    assert_eq!(listed, 4, "{dry}");
    assert_eq!(parquet_files(&lake.join("silver/events_inc")), 5);
    let out = p.ok(&["vacuum", "--retain-hours", "0", "--unsafe-retention"]);
    assert!(out.contains("files deleted"), "{out}");
    assert_eq!(parquet_files(&lake.join("silver/events_inc")), 1);
    assert_eq!(read_back(&lake.join("silver/events_inc")), before);
    assert_eq!(
        p.sql("select n, amount from gold.summary"),
        vec!["n,amount", "12,780"]
    );

    // New rows after all that are still found.
    land(&p, 4);
    p.ok(&["run"]);
    assert_eq!(
        p.count("select count(distinct id) from silver.events_inc"),
        15
    );
    assert_eq!(p.count("select count(*) from silver.events_inc"), 15);
    assert_eq!(p.sql("select n from gold.summary"), vec!["n", "15"]);
}

#[test]
fn maintenance_refuses_bad_input_by_name() {
    let p = project();
    land(&p, 0);
    p.ok(&["run"]);
    let out = p.strata(&["vacuum", "--retain-hours", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bronze.events: a retention of 1 hours is shorter than the table's 168 hours"),
        "{err}"
    );
    assert!(err.contains("--unsafe-retention"), "{err}");

    let out = p.strata(&["optimize", "--target-size", "lots"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--target-size `lots` is not a size"), "{err}");

    let out = p.strata(&["optimize", "--select", "silver.nope"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("silver.nope"), "{err}");

    // A table compacted with nothing to compact is left as it was.
    let out = p.ok(&["optimize", "--format", "csv"]);
    for r in csv_rows(&out) {
        assert_eq!(r[2], "0", "one file is not compacted: {out}");
    }
}

#[test]
fn runs_compact_tables_once_small_files_gather() {
    let p = project();
    p.write(
        "strata.toml",
        &CONFIG.replace("name = \"upkeep\"", "name = \"upkeep\"\nauto_compact = 3"),
    );
    let lake = p.path().join("lake");
    for i in 0..2 {
        land(&p, i);
        p.ok(&["run"]);
    }
    assert_eq!(active_files(&lake.join("silver/events_inc")), 2);
    // The third small file sets off a compaction in the run that wrote it.
    land(&p, 2);
    p.ok(&["run"]);
    assert_eq!(active_files(&lake.join("silver/events_inc")), 1);
    assert_eq!(active_files(&lake.join("bronze/events")), 1);
    let log = p.ok(&["runs", &run_id(&p), "--log"]);
    assert!(
        log.contains("compacted small files") && log.contains("silver.events_inc"),
        "{log}"
    );
    // Readers downstream found every row once, then and on the next run.
    land(&p, 3);
    p.ok(&["run"]);
    assert_eq!(
        p.sql("select count(*) as n, count(distinct id) as ids from silver.events_inc"),
        vec!["n,ids", "12,12"]
    );
    assert_eq!(
        p.sql("select name, amount, n from gold.by_name order by name"),
        vec!["name,amount,n", "n0,420,6", "n1,360,6"]
    );
    assert_eq!(p.count("select count(*) from silver.events_latest"), 12);
}

/// The latest run's id.
fn run_id(p: &TestProject) -> String {
    let runs = p.ok(&["runs", "--format", "json", "--limit", "1"]);
    let run: serde_json::Value =
        serde_json::from_str(runs.lines().next().expect("a run")).expect("json");
    run["run_id"].as_str().expect("run id").to_string()
}
