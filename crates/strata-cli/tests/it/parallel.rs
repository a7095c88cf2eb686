//! Large batches: a CSV file decoded in chunks on every core and written by
//! one Parquet writer per core, committed once. The thresholds are lowered
//! with STRATA_PARALLEL_WRITE_ROWS so a small file takes that path; the table
//! must read back (by the Python `deltalake` reader too) exactly as the
//! one-writer path leaves it.

use std::process::Command;

use crate::support::TestProject;

fn project(rows: usize) -> TestProject {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        "[project]\nname = \"par\"\n[sources.items]\nformat = \"csv\"\npath = \"data/*.csv\"\ncolumns = { id = \"bigint\", name = \"varchar\", price = \"decimal(15,2)\", day = \"date\" }\n",
    );
    let mut csv = String::from("id,name,price,day\n");
    for i in 0..rows {
        if i == 5 {
            csv.push_str("oops,bad,1.00,2024-01-01\n");
        }
        csv.push_str(&format!(
            "{i},\"item, {i}\",{}.{:02},2024-01-{:02}\n",
            i % 1000,
            i % 100,
            i % 28 + 1
        ));
    }
    p.write("data/a.csv", &csv);
    p
}

fn summary(p: &TestProject, env: &[(&str, &str)]) -> Vec<String> {
    p.ok_env(
        &[
            "sql",
            "--format",
            "csv",
            "select count(*) as n, count(distinct id) as ids, sum(id) as s, sum(price) as p, min(day) as d0, max(day) as d1, max(name) as m from bronze.items",
        ],
        env,
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// What the Python `deltalake` reader prints for `bronze.items`: `values`, a
/// Python expression over the table `d` and its rows `t`.
fn python_read(p: &TestProject, values: &str) -> String {
    let script = format!(
        // (os._exit: the reader's threads can abort the interpreter's teardown.)
        "import os, sys, deltalake; d = deltalake.DeltaTable(sys.argv[1]); t = d.to_pyarrow_table(); print({values}, flush=True); os._exit(0)"
    );
    let py = Command::new("python3")
        .args(["-c", &script])
        .arg(p.path().join("lake/bronze/items"))
        .output()
        .expect("python3");
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    String::from_utf8_lossy(&py.stdout).trim().to_string()
}

#[test]
fn a_large_batch_written_in_parallel_reads_back_like_one_writer_wrote_it() {
    let rows = 200_000;
    let one = project(rows);
    one.ok_env(&["run"], &[("STRATA_PARALLEL_WRITE_ROWS", "1000000000")]);
    let par = project(rows);
    let env = [("STRATA_PARALLEL_WRITE_ROWS", "1")];
    par.ok_env(&["run"], &env);
    assert_eq!(summary(&par, &env), summary(&one, &[]));
    // Nothing lost: the bad line is quarantined with its line number.
    assert_eq!(
        par.sql("select _line, _error from bronze.items_quarantine")[1..],
        one.sql("select _line, _error from bronze.items_quarantine")[1..]
    );
    let tasks = par.tasks();
    assert_eq!(tasks["bronze.items"]["rows_read"], rows as i64 + 1);
    assert_eq!(tasks["bronze.items"]["rows_written"], rows as i64);
    // The parallel writers left more than one data file, in one commit.
    let log = par.path().join("lake/bronze/items/_delta_log");
    let commits: Vec<_> = std::fs::read_dir(&log)
        .expect("log")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .collect();
    let adds: usize = commits
        .iter()
        .map(|e| {
            std::fs::read_to_string(e.path())
                .expect("commit")
                .lines()
                .filter(|l| l.contains("\"add\""))
                .count()
        })
        .sum();
    assert!(adds >= 2, "{adds} data files");

    // An independent reader agrees.
    let expected_sum: i64 = (0..rows as i64).sum();
    assert_eq!(
        python_read(&par, "t.num_rows, sum(t.column('id').to_pylist())"),
        format!("{rows} {expected_sum}")
    );

    // A second file appends through the same path; the manifest keeps both.
    par.write(
        "data/b.csv",
        "id,name,price,day\n1000000,x,1.00,2024-02-01\n",
    );
    par.ok_env(&["run"], &env);
    assert_eq!(
        par.count("select count(*) from bronze.items"),
        rows as i64 + 1
    );
}

/// The `add` actions of a table's log, as JSON.
fn adds(p: &TestProject, table: &str) -> Vec<serde_json::Value> {
    let log = p.path().join(format!("lake/{table}/_delta_log"));
    let mut out = vec![];
    let mut commits: Vec<_> = std::fs::read_dir(&log)
        .expect("log")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    commits.sort();
    for c in commits {
        for line in std::fs::read_to_string(c).expect("commit").lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("action");
            if let Some(a) = v.get("add") {
                out.push(a.clone());
            }
        }
    }
    out
}

/// Parquet files in a table's folder (committed or not).
fn parquet_files(p: &TestProject, table: &str) -> usize {
    let dir = p.path().join(format!("lake/{table}"));
    if !dir.exists() {
        return 0;
    }
    std::fs::read_dir(dir)
        .expect("table folder")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
        .count()
}

#[test]
fn a_large_csv_file_streams_into_bronze_with_statistics_and_loses_nothing() {
    let rows = 200_000;
    // 64 KiB chunks: the ~6 MB file is cut into about 90 chunks, decoded and
    // written to Parquet on every core as they come.
    let stream = [("STRATA_CSV_CHUNK_BYTES", "65536")];
    let one = project(rows);
    one.ok_env(&["run"], &[("STRATA_PARALLEL_WRITE_ROWS", "1000000000")]);
    let par = project(rows);
    par.ok_env(&["run"], &stream);
    assert_eq!(summary(&par, &stream), summary(&one, &[]));
    assert_eq!(
        par.sql("select _line, _error, _raw from bronze.items_quarantine")[1..],
        one.sql("select _line, _error, _raw from bronze.items_quarantine")[1..]
    );
    let tasks = par.tasks();
    assert_eq!(tasks["bronze.items"]["rows_read"], rows as i64 + 1);
    assert_eq!(tasks["bronze.items"]["rows_written"], rows as i64);
    assert_eq!(tasks["bronze.items"]["rows_quarantined"], 1);

    // One commit created the table with the files; each file's statistics
    // bound its values (ids 0..rows, days in January 2024).
    let added = adds(&par, "bronze/items");
    assert!(!added.is_empty());
    assert_eq!(
        parquet_files(&par, "bronze/items"),
        added.len(),
        "no stray files"
    );
    let log = par.path().join("lake/bronze/items/_delta_log");
    assert!(log.join("00000000000000000000.json").exists());
    assert!(!log.join("00000000000000000001.json").exists());
    let mut total = 0;
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for a in &added {
        let stats: serde_json::Value =
            serde_json::from_str(a["stats"].as_str().expect("stats")).expect("stats json");
        total += stats["numRecords"].as_i64().expect("numRecords");
        lo = lo.min(stats["minValues"]["id"].as_i64().expect("min id"));
        hi = hi.max(stats["maxValues"]["id"].as_i64().expect("max id"));
        assert_eq!(stats["nullCount"]["id"], 0);
        let d0 = stats["minValues"]["day"].as_str().expect("min day");
        assert!(d0.starts_with("2024-01-"), "{d0}");
    }
    assert_eq!((total, lo, hi), (rows as i64, 0, rows as i64 - 1));

    // An independent reader agrees, and filters on the statistics.
    let expected_sum: i64 = (0..rows as i64).sum();
    assert_eq!(
        python_read(
            &par,
            "t.num_rows, sum(t.column('id').to_pylist()), d.to_pyarrow_table(filters=[('id', '>=', 199990)]).num_rows"
        ),
        format!("{rows} {expected_sum} 10")
    );

    // A second, large file streams into the existing table.
    let mut csv = String::from("id,name,price,day\n");
    for i in 0..50_000 {
        csv.push_str(&format!("{},n,1.00,2024-02-01\n", 1_000_000 + i));
    }
    par.write("data/b.csv", &csv);
    par.ok_env(&["run"], &stream);
    assert_eq!(
        par.count("select count(*) from bronze.items"),
        rows as i64 + 50_000
    );
    assert_eq!(
        parquet_files(&par, "bronze/items"),
        adds(&par, "bronze/items").len()
    );
}

#[test]
fn a_streamed_file_with_a_bad_row_under_on_bad_rows_fail_leaves_nothing() {
    let p = project(100_000);
    let toml = std::fs::read_to_string(p.path().join("strata.toml")).expect("toml");
    p.write(
        "strata.toml",
        &toml.replace(
            "format = \"csv\"",
            "format = \"csv\"\non_bad_rows = \"fail\"",
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["run", "--project"])
        .arg(p.path())
        .env("NO_COLOR", "1")
        .env("STRATA_CSV_CHUNK_BYTES", "65536")
        .output()
        .expect("run strata");
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("a.csv:7"), "{text}");
    assert!(text.contains("on_bad_rows"), "{text}");
    // The files the threads had written are gone, and no table was made.
    assert_eq!(parquet_files(&p, "bronze/items"), 0);
    assert!(!p.path().join("lake/bronze/items/_delta_log").exists());
}

#[test]
fn a_run_killed_while_a_file_streams_in_loads_each_row_once_when_run_again() {
    let rows = 400_000;
    let p = project(rows);
    let table = p.path().join("lake/bronze/items");
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["run", "--project"])
        .arg(p.path())
        .env("STRATA_CSV_CHUNK_BYTES", "65536")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn strata");
    // Kill it (SIGKILL) once the threads have written Parquet files into the
    // table's folder, before the commit that would make them part of it.
    let started = std::time::Instant::now();
    let mut killed_before_commit = false;
    while started.elapsed() < std::time::Duration::from_secs(120) {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if parquet_files(&p, "bronze/items") > 0 && !table.join("_delta_log").exists() {
            let _ = child.kill();
            let _ = child.wait();
            killed_before_commit = !table.join("_delta_log").exists();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        killed_before_commit,
        "the run was not caught between writing and committing"
    );
    let stray = parquet_files(&p, "bronze/items");
    assert!(stray > 0);

    // The next run finds the dead one and reads the file again; the killed
    // run's files are not in the table, so every row is there once.
    let env = [("STRATA_CSV_CHUNK_BYTES", "65536")];
    p.ok_env(&["run"], &env);
    p.ok_env(&["run"], &env);
    assert_eq!(
        p.sql("select count(*) as n, count(distinct id) as ids from bronze.items")[1],
        format!("{rows},{rows}")
    );
    assert_eq!(p.count("select count(*) from bronze.items_quarantine"), 1);
    assert_eq!(
        parquet_files(&p, "bronze/items"),
        adds(&p, "bronze/items").len() + stray,
        "the killed run's files stay outside the table"
    );
}

#[test]
fn a_large_csv_file_streams_into_a_lake_on_object_storage() {
    let s3 = crate::storage::s3();
    s3.objects(&["mkbucket", "lake"]);
    let rows = 200_000;
    let p = project(rows);
    let toml = std::fs::read_to_string(p.path().join("strata.toml")).expect("toml");
    p.write(
        "strata.toml",
        &toml.replace(
            "name = \"par\"\n",
            &format!(
                "name = \"par\"\nlake = \"s3://lake/par\"\n[storage]\naws_endpoint = \"{}\"\naws_access_key_id = \"test-key\"\naws_secret_access_key = \"test-secret\"\naws_region = \"us-east-1\"\naws_allow_http = \"true\"\n",
                s3.endpoint
            ),
        ),
    );
    let env = [("STRATA_CSV_CHUNK_BYTES", "65536")];
    p.ok_env(&["run"], &env);
    assert!(!p.path().join("lake").exists(), "a local lake was created");
    let n = p.ok_env(
        &[
            "sql",
            "--format",
            "csv",
            "select count(*) as n, count(distinct id) as ids from bronze.items",
        ],
        &env,
    );
    assert_eq!(n.lines().nth(1), Some(format!("{rows},{rows}").as_str()));
    let tasks = p.tasks();
    assert_eq!(tasks["bronze.items"]["rows_read"], rows as i64 + 1);
    assert_eq!(tasks["bronze.items"]["rows_quarantined"], 1);
    // The uploaded files are the table's, with their statistics, as the
    // Python reader parses them.
    let files = s3.objects(&["stats", "s3://lake/par/bronze/items"]);
    let mut total = 0;
    for line in files.lines() {
        let st: serde_json::Value = serde_json::from_str(line).expect("stats line");
        total += st["num_records"].as_i64().expect("num_records");
        assert!(st["min.id"].is_i64() && st["max.id"].is_i64(), "{line}");
    }
    assert_eq!(total, rows as i64);
    // One file per decoding thread (the one-writer path would leave one).
    assert!(files.lines().count() >= 2, "{files}");
    let uploaded = s3
        .keys("lake")
        .iter()
        .filter(|k| k.starts_with("par/bronze/items/part-") && k.ends_with(".parquet"))
        .count();
    assert_eq!(uploaded, files.lines().count(), "no stray uploads");
}
