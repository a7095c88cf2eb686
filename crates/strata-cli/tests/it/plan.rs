//! `strata plan`, `strata lineage` and targets with defer, on a small project.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::TestProject;

fn shop() -> TestProject {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        "[project]\nname = \"plan\"\n[sources.orders]\nformat = \"csv\"\npath = \"data/*.csv\"\ncolumns = { id = \"bigint\", customer = \"string\", amount = \"double\" }\n",
    );
    p.write(
        "data/a.csv",
        "id,customer,amount\n1,ann,10.5\n2,bob,3\n3,ann,1.5\n",
    );
    p.write(
        "models/silver/orders.sql",
        "select id, trim(customer) as customer, amount from bronze.orders",
    );
    p.write(
        "models/gold/customers.sql",
        "select customer, sum(amount) as revenue, count(*) as orders from silver.orders group by customer",
    );
    p
}

/// The plan as printed, without the run-dependent parts.
fn plan(p: &TestProject) -> String {
    p.ok(&["plan"])
}

#[test]
fn plan_reports_each_kind_of_change() {
    let p = shop();
    insta::assert_snapshot!("before_any_run", plan(&p));
    p.ok(&["run"]);
    insta::assert_snapshot!("after_run", plan(&p));

    // Layout only: not a change.
    p.write(
        "models/silver/orders.sql",
        "-- reformatted\nSELECT id,\n       trim(customer) AS customer,\n       amount\n  FROM bronze.orders",
    );
    assert!(plan(&p).contains("0 changed, 0 affected"));

    // A new column, a narrowed type, and gold downstream affected.
    p.write(
        "models/silver/orders.sql",
        "select cast(id as int) as id, trim(customer) as customer, amount, amount > 5 as big from bronze.orders",
    );
    let text = plan(&p);
    insta::assert_snapshot!("changed_and_affected", text);
    let out = p.strata(&["plan", "--fail-on-breaking"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a narrowed column breaks readers"
    );
    let json: serde_json::Value =
        serde_json::from_str(&p.ok(&["plan", "--format", "json"])).expect("json");
    assert_eq!(json["breaking"], true);
    assert_eq!(
        (json["changed"].as_i64(), json["affected"].as_i64()),
        (Some(1), Some(1))
    );
    let silver = json["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["name"] == "silver.orders")
        .expect("silver.orders");
    assert_eq!(silver["columns"][0]["change"], "retyped");
    assert_eq!(silver["columns"][0]["widened"], false);
    assert_eq!(silver["columns"][1]["change"], "added");

    // Applying it: the next plan is clean again.
    p.ok(&["run"]);
    assert!(plan(&p).contains("0 changed, 0 affected, 0 removed, 3 unchanged"));

    // A removed model, a renamed column; a broken contract.
    std::fs::remove_file(p.path().join("models/gold/customers.sql")).expect("rm");
    p.write(
        "models/silver/orders.sql",
        "/*\n[columns.id]\ntype = \"bigint\"\n[columns.customer]\ntype = \"string\"\n[columns.total]\ntype = \"double\"\n[columns.big]\ntype = \"string\"\n*/\nselect cast(id as int) as id, trim(customer) as customer, amount as total, amount > 5 as big from bronze.orders",
    );
    let text = plan(&p);
    insta::assert_snapshot!("removed_renamed_contract", text);
    assert!(text.contains("contract: column `big` is Boolean"), "{text}");
    assert_eq!(
        p.strata(&["plan", "--fail-on-breaking"]).status.code(),
        Some(1)
    );
    // Once applied (after fixing the contract), removed tables are forgotten.
    p.write(
        "models/silver/orders.sql",
        "select cast(id as int) as id, trim(customer) as customer, amount as total, amount > 5 as big from bronze.orders",
    );
    p.ok(&["run"]);
    assert!(plan(&p).contains("0 added, 0 changed, 0 affected, 0 removed, 2 unchanged"));
}

#[test]
fn lineage_to_the_column_both_ways() {
    let p = shop();
    let text = p.ok(&["lineage", "gold.customers", "--columns"]);
    insta::assert_snapshot!("columns_upstream", text);
    let text = p.ok(&["lineage", "bronze.orders.amount", "--downstream"]);
    assert!(text.contains("silver.orders.amount  (copy)"), "{text}");
    assert!(
        text.contains("gold.customers.revenue  (transformation)"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&p.ok(&["lineage", "gold.customers.customer", "--format", "json"]))
            .expect("json");
    let up = json["columns"][0]["upstream"].as_array().expect("upstream");
    assert_eq!(up[0]["column"]["table"], "silver.orders");
    assert_eq!(up[1]["column"]["table"], "bronze.orders");
    assert_eq!(up[1]["copy"], false, "trim() transforms it");
    let table = p.ok(&["lineage", "silver.orders"]);
    assert!(
        table.contains("downstream of silver.orders:\n  gold.customers"),
        "{table}"
    );
    let bad = p.strata(&["lineage", "gold.customers.nope"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("gold.customers has no column `nope`"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// Every file under `dir` with its size and modification time.
fn listing(dir: &Path) -> BTreeMap<String, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let m = e.metadata().expect("metadata");
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.insert(
                    e.path().display().to_string(),
                    (m.len(), m.modified().expect("mtime")),
                );
            }
        }
    }
    out
}

#[test]
fn a_dev_target_defers_unchanged_tables_to_prod() {
    let p = shop();
    let toml = std::fs::read_to_string(p.path().join("strata.toml")).expect("toml");
    p.write(
        "strata.toml",
        &format!(
            "{toml}\n[targets.prod]\nlake = \"lake-prod\"\nstate = \"sqlite://.strata/prod.db\"\n\n[targets.dev]\nlake = \"lake-dev\"\nstate = \"sqlite://.strata/dev.db\"\ndefer = \"prod\"\n"
        ),
    );
    // Nothing deployed in prod yet: a deferring run says so.
    let early = p.strata(&["run", "--target", "dev"]);
    assert_eq!(early.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&early.stderr).contains("target prod has deployed nothing yet")
    );

    p.ok(&["run", "--target", "prod"]);
    let prod_before = listing(&p.path().join("lake-prod"));
    // Change only gold in dev.
    p.write(
        "models/gold/customers.sql",
        "select customer, sum(amount) as revenue, count(*) as orders, max(amount) as largest from silver.orders group by customer",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["run", "--target", "dev", "--project"])
        .arg(p.path())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("deferring to target prod: 2 unchanged tables are read from its lake"),
        "{stderr}"
    );
    // Dev built only gold, reading silver from prod; prod was not touched.
    assert!(p.path().join("lake-dev/gold/customers/_delta_log").is_dir());
    assert!(!p.path().join("lake-dev/silver").exists());
    assert!(!p.path().join("lake-dev/bronze").exists());
    assert_eq!(listing(&p.path().join("lake-prod")), prod_before);
    let rows = p.ok(&[
        "sql",
        "--target",
        "dev",
        "--format",
        "csv",
        "select customer, revenue, largest from gold.customers order by customer",
    ]);
    assert_eq!(
        rows,
        "customer,revenue,largest\nann,12.0,10.5\nbob,3.0,3.0\n"
    );
    // Prod's gold is still the old one.
    let prod = p.ok(&[
        "sql",
        "--target",
        "prod",
        "--format",
        "csv",
        "select * from gold.customers order by customer",
    ]);
    assert_eq!(prod.lines().next(), Some("customer,revenue,orders"));
    // The dev plan against dev's own deployment: gold deployed, upstream not.
    let dev_plan = p.ok(&["plan", "--target", "dev"]);
    assert!(dev_plan.starts_with("Target dev:"), "{dev_plan}");
}
