//! DAG and selection tests on small projects written to a temp folder.

use std::collections::BTreeSet;

use strata_project::Project;

use crate::Graph;

fn project(models: &[(&str, &str)]) -> (tempfile::TempDir, Project) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("strata.toml"),
        "[project]\nname = \"t\"\n[sources.orders]\nformat = \"csv\"\npath = \"data/*.csv\"\n",
    )
    .expect("write");
    for (p, sql) in models {
        let path = dir.path().join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, sql).expect("write");
    }
    let p = Project::load(dir.path()).expect("project loads");
    (dir, p)
}

fn shop() -> (tempfile::TempDir, Graph) {
    let (d, p) = project(&[
        (
            "models/silver/orders.sql",
            "/* tags = [\"core\"] */ select * from bronze.orders",
        ),
        (
            "models/silver/bad.sql",
            "select * from bronze.orders_quarantine",
        ),
        ("models/gold/revenue.sql", "select * from silver.orders"),
        (
            "models/gold/report.sql",
            "with r as (select * from gold.revenue) select * from r",
        ),
        ("models/gold/other.sql", "select 1 as x"),
    ]);
    let g = Graph::build(&p).expect("graph builds");
    (d, g)
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn order_puts_upstream_first() {
    let (_d, g) = shop();
    let pos = |n: &str| g.order().iter().position(|x| x == n).expect("in order");
    assert!(pos("bronze.orders") < pos("silver.orders"));
    assert!(pos("silver.orders") < pos("gold.revenue"));
    assert!(pos("gold.revenue") < pos("gold.report"));
    // The quarantine table belongs to its source's node.
    assert_eq!(
        g.node("silver.bad").expect("node").upstream,
        vec!["bronze.orders".to_string()]
    );
}

#[test]
fn selection_expressions() {
    let (_d, g) = shop();
    assert_eq!(
        g.select("gold.revenue").expect("select"),
        set(&["gold.revenue"])
    );
    assert_eq!(
        g.select("+gold.revenue").expect("select"),
        set(&["gold.revenue", "silver.orders", "bronze.orders"])
    );
    assert_eq!(
        g.select("silver.orders+").expect("select"),
        set(&["silver.orders", "gold.revenue", "gold.report"])
    );
    assert_eq!(
        g.select("layer:silver").expect("select"),
        set(&["silver.orders", "silver.bad"])
    );
    assert_eq!(
        g.select("tag:core").expect("select"),
        set(&["silver.orders"])
    );
    assert_eq!(
        g.select("gold.other, revenue").expect("select"),
        set(&["gold.other", "gold.revenue"])
    );
    assert_eq!(g.select("").expect("select").len(), 6);
    let e = g.select("gold.revenu").expect_err("typo");
    assert!(
        e.message.contains("did you mean `gold.revenue`?"),
        "{}",
        e.message
    );
    assert!(g.select("layer:platinum").is_err());
    assert!(g.select("tag:nope").is_err());
}

#[test]
fn missing_upstream_is_located_with_a_suggestion() {
    let (_d, p) = project(&[("models/silver/a.sql", "select *\nfrom bronze.order")]);
    let e = Graph::build(&p).expect_err("unknown table").to_string();
    assert!(
        e.starts_with(
            "models/silver/a.sql:2:6: unknown table `bronze.order`; did you mean `bronze.orders`?"
        ),
        "{e}"
    );
}

#[test]
fn bad_sql_is_located() {
    let (_d, p) = project(&[(
        "models/silver/a.sql",
        "/* materialized = \"table\" */\nselect a,\nfrom bronze.orders where",
    )]);
    let e = Graph::build(&p).expect_err("bad sql").to_string();
    assert!(e.starts_with("models/silver/a.sql:3:"), "{e}");
    assert!(e.contains("SQL error"), "{e}");
}

#[test]
fn cycles_print_the_whole_path() {
    let (_d, p) = project(&[
        ("models/silver/a.sql", "select * from gold.b"),
        ("models/gold/b.sql", "select * from silver.c"),
        ("models/silver/c.sql", "select * from silver.a"),
    ]);
    let e = Graph::build(&p).expect_err("cycle").to_string();
    assert!(e.contains("cycle: "), "{e}");
    for n in ["silver.a", "gold.b", "silver.c"] {
        assert!(e.contains(n), "{e}");
    }
    let path = e
        .split("cycle: ")
        .nth(1)
        .expect("path")
        .split(';')
        .next()
        .expect("path");
    let hops: Vec<&str> = path.split(" -> ").collect();
    assert_eq!(hops.len(), 4, "{e}");
    assert_eq!(hops[0], hops[3], "{e}");
}

#[test]
fn unqualified_and_self_references_are_errors() {
    let (_d, p) = project(&[
        ("models/silver/a.sql", "select * from orders"),
        ("models/silver/b.sql", "select * from silver.b"),
    ]);
    let e = Graph::build(&p).expect_err("errors");
    assert_eq!(e.0.len(), 2, "{e}");
}
