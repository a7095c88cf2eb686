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
    let py = Command::new("python3")
        .args([
            "-c",
            "import sys, deltalake; t = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table(); print(t.num_rows, sum(t.column('id').to_pylist()))",
            par.path().join("lake/bronze/items").to_str().expect("utf8"),
        ])
        .output()
        .expect("python3");
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let expected_sum: i64 = (0..rows as i64).sum();
    assert_eq!(
        String::from_utf8_lossy(&py.stdout).trim(),
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
