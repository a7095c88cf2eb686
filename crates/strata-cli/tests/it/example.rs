//! The shop example end to end: first run, a second run that changes nothing,
//! `example next-day` read incrementally, and an independent Delta reader (the
//! Python `deltalake` package) agreeing with `strata sql`.

use std::process::Command;

use crate::support::TestProject;

#[test]
fn shop_example_runs_incrementally_and_reads_back_independently() {
    let p = TestProject::new();
    let shop = crate::support::example_shop(&p);
    let dir = shop.0.clone();

    shop.ok(&["validate"]);
    shop.ok(&["run"]);
    let first = shop.tasks();
    for t in [
        "bronze.orders",
        "bronze.customers",
        "bronze.products",
        "silver.orders",
        "silver.customers",
        "gold.daily_revenue",
    ] {
        assert_eq!(first[t]["status"], "success", "{t}: {}", first[t]);
    }
    // Nothing lost: read = loaded + quarantined, and the flaws were quarantined.
    let o = &first["bronze.orders"];
    assert_eq!(
        o["rows_read"].as_i64(),
        Some(o["rows_written"].as_i64().unwrap_or(0) + o["rows_quarantined"].as_i64().unwrap_or(0))
    );
    assert!(o["rows_quarantined"].as_i64().unwrap_or(0) > 0);
    for layer in [
        "bronze/orders",
        "silver/orders",
        "gold/daily_revenue",
        "gold/fct_orders",
        "gold/customer_lifetime_value",
    ] {
        assert!(
            dir.join("lake").join(layer).join("_delta_log").is_dir(),
            "{layer} has a _delta_log"
        );
    }
    // The example's rule violations (no customer, quantity <= 0) are quarantined
    // by silver.orders' expectations and never reach gold.
    assert!(shop.count("select count(*) from silver.orders_quarantine where quantity <= 0") > 0);
    assert!(
        shop.count("select count(*) from silver.orders_quarantine where customer_id is null") > 0
    );
    assert_eq!(
        shop.count(
            "select count(*) from gold.fct_orders where quantity <= 0 or customer_id is null"
        ),
        0
    );
    let revenue_rows = shop.count("select count(*) from gold.daily_revenue");
    assert!(revenue_rows > 0);
    let orders_before = shop.count("select count(*) from silver.orders");

    // Second run: no new files, nothing changes, incremental models read 0 rows.
    shop.ok(&["run"]);
    let second = shop.tasks();
    assert_eq!(second["silver.orders"]["status"], "skipped");
    assert_eq!(second["silver.orders"]["rows_read"], 0);
    assert_eq!(second["gold.daily_revenue"]["status"], "skipped");
    assert_eq!(
        shop.count("select count(*) from silver.orders"),
        orders_before
    );

    // The next day (and the late file) are read alone into the incremental model.
    shop.ok(&["example", "next-day"]);
    shop.ok(&["run"]);
    let third = shop.tasks();
    assert_eq!(third["bronze.orders"]["message"], "2 files");
    let new_rows = third["bronze.orders"]["rows_written"]
        .as_i64()
        .expect("rows");
    assert_eq!(
        third["silver.orders"]["rows_read"].as_i64(),
        Some(new_rows),
        "reads only the new day's rows"
    );
    assert!(shop.count("select count(*) from silver.orders") > orders_before);
    assert_eq!(third["gold.daily_revenue"]["status"], "success");
    assert_eq!(third["silver.customers"]["status"], "success");
    assert!(shop.count("select count(*) from silver.customers where not is_current") > 0);

    // An independent reader sees the same gold rows.
    let ours = shop.sql("select cast(order_date as varchar) as d, region, orders, cast(round(revenue * 100) as bigint) as cents from gold.daily_revenue order by d, region");
    let script = r#"
import sys, deltalake
t = deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table().to_pylist()
rows = sorted((str(r["order_date"]), r["region"], r["orders"], round(r["revenue"] * 100)) for r in t)
print("d,region,orders,cents")
for r in rows:
    print(",".join(str(x) for x in r))
sys.stdout.flush()
import os
os._exit(0)  # the reader's threads can abort the interpreter's teardown
"#;
    let read = || {
        Command::new("python3")
            .args([
                "-c",
                script,
                dir.join("lake/gold/daily_revenue").to_str().expect("utf8"),
            ])
            .output()
            .expect("python3 runs (scripts/test.sh installs deltalake)")
    };
    let mut py = read();
    if !py.status.success() {
        // Seen once under a fully loaded machine; record it and read once more.
        eprintln!(
            "python deltalake failed once, retrying: {}",
            String::from_utf8_lossy(&py.stderr)
        );
        py = read();
    }
    assert!(
        py.status.success(),
        "python deltalake failed: {}",
        String::from_utf8_lossy(&py.stderr)
    );
    let theirs: Vec<String> = String::from_utf8_lossy(&py.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(theirs.len(), ours.len());
    assert_eq!(theirs, ours);
}

#[test]
fn a_reader_that_stops_early_ends_the_output_quietly() {
    let p = TestProject::new();
    let dir = crate::support::example_shop(&p).0;
    // Far more than a pipe holds, so strata is still printing when the
    // reader goes away (as `strata sql … | head -1`), in each output form.
    for format in ["table", "csv", "json"] {
        stops_early(
            &dir,
            &[
                "sql",
                "--format",
                format,
                "select value, value * 2 as twice from generate_series(1, 300000)",
            ],
        );
    }
}

/// Runs strata with `args`, reads one line of its output, closes the pipe,
/// and expects a quiet, successful end.
fn stops_early(dir: &std::path::Path, args: &[&str]) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--project", dir.to_str().expect("utf8")])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strata");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("first line");
    assert!(!first.is_empty(), "{args:?}: no output");
    // The reader is dropped here, closing the pipe.
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(out.status.success(), "{args:?}: {:?}: {err}", out.status);
}
