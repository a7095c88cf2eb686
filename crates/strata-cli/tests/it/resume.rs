//! Resumable runs: a failed run resumed after a fix runs only its unfinished
//! tasks; a run killed with SIGKILL is found, marked interrupted, and resuming
//! it ends with the same tables as a clean run.

use std::process::Command;
use std::time::Duration;

use crate::support::{Shop, TestProject};

#[test]
fn resume_runs_only_unfinished_tasks() {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        "[project]\nname = \"r\"\n[sources.s]\nformat = \"csv\"\npath = \"data/*.csv\"\ncolumns = { id = \"bigint\" }\n",
    );
    p.write("data/1.csv", "id\n1\n2\n");
    p.write("models/silver/ok.sql", "select id from bronze.s");
    p.write(
        "models/silver/broken.sql",
        "select id / 0 as x, idd from bronze.s",
    );
    p.write("models/gold/after.sql", "select * from silver.broken");
    let out = p.strata(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    let first = p.tasks();
    assert_eq!(first["silver.broken"]["status"], "failed");
    assert_eq!(first["gold.after"]["status"], "upstream_failed");

    p.write("models/silver/broken.sql", "select id as x from bronze.s");
    let out = p.ok(&["run", "--resume"]);
    assert!(out.contains("silver.broken"), "{out}");
    let second = p.tasks();
    let names: Vec<&String> = second.keys().collect();
    assert_eq!(
        names,
        vec!["gold.after", "silver.broken"],
        "only the unfinished tasks run"
    );
    assert_eq!(p.count("select count(*) from gold.after"), 2);
    let runs = p.ok(&["runs", "--format", "json", "--limit", "1"]);
    assert!(runs.contains("\"trigger\":\"resume\""), "{runs}");
    // Nothing left to resume.
    assert_eq!(p.strata(&["run", "--resume"]).status.code(), Some(2));
}

/// Table contents that must match between a clean run and a killed-then-resumed one.
fn fingerprint(shop: &Shop) -> Vec<Vec<String>> {
    [
        "select count(*), sum(order_id) from silver.orders",
        "select count(*), sum(revenue) from gold.daily_revenue",
        "select count(*), sum(lifetime_value) from gold.customer_lifetime_value",
        "select count(*), sum(case when is_current then 1 else 0 end) from silver.customers",
        "select count(*) from bronze.orders",
        "select count(*) from bronze.orders_quarantine",
        "select count(*) from silver.orders_quarantine",
    ]
    .iter()
    .map(|q| shop.sql(q))
    .collect()
}

#[test]
fn a_killed_run_is_resumed_to_the_same_tables() {
    let p = TestProject::new();
    let init = |name: &str| crate::support::example_shop_named(&p, name);
    let clean = init("clean");
    clean.ok(&["run"]);
    let expected = fingerprint(&clean);

    for delay_ms in [300u64, 1200, 2500] {
        let shop = init(&format!("killed{delay_ms}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["run", "--project", shop.0.to_str().expect("utf8")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let out = shop.strata(&["run", "--resume"]);
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.code() == Some(2)
            && (err.contains("nothing to resume") || err.contains("no run to resume yet"))
        {
            // it had finished before the kill, or had not yet recorded its run
        } else {
            assert!(out.status.success(), "resume after {delay_ms} ms: {err}");
            assert!(
                err.contains("interrupted") || err.contains("resuming"),
                "{err}"
            );
        }
        // Whatever happened, one more plain run changes nothing and tables match a clean run.
        shop.ok(&["run"]);
        assert_eq!(fingerprint(&shop), expected, "killed after {delay_ms} ms");
    }
}
