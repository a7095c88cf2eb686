//! Plan output for each kind of change, as snapshots of what `strata plan` prints.

use std::collections::BTreeMap;

use strata_project::Project;

use super::*;
use crate::Graph;

/// A project with one source, two silver models and a gold model.
fn project(extra: &[(&str, &str)]) -> (tempfile::TempDir, Project, Graph) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("strata.toml"),
        "[project]\nname = \"t\"\n[sources.orders]\nformat = \"csv\"\npath = \"data/*.csv\"\n",
    )
    .expect("write");
    let mut files: BTreeMap<&str, &str> = [
        (
            "models/silver/orders.sql",
            "select id, amount, day from bronze.orders",
        ),
        (
            "models/silver/events.sql",
            "/* materialized = \"incremental\"\nstrategy = \"append\" */\nselect id, day from bronze.orders",
        ),
        (
            "models/gold/revenue.sql",
            "select day, sum(amount) as revenue from silver.orders group by day",
        ),
    ]
    .into_iter()
    .collect();
    for (p, sql) in extra {
        if sql.is_empty() {
            files.remove(p);
        } else {
            files.insert(p, sql);
        }
    }
    for (p, sql) in files {
        let path = dir.path().join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, sql).expect("write");
    }
    let p = Project::load(dir.path()).expect("project loads");
    let g = Graph::build(&p).expect("graph builds");
    (dir, p, g)
}

fn col(name: &str, ty: &str) -> Column {
    Column {
        name: name.into(),
        ty: ty.into(),
        nullable: true,
    }
}

/// The baseline columns of each table.
fn base_columns() -> BTreeMap<String, Vec<Column>> {
    [
        (
            "bronze.orders",
            vec![
                col("id", "Int64"),
                col("amount", "Float64"),
                col("day", "Date32"),
            ],
        ),
        (
            "silver.orders",
            vec![
                col("id", "Int64"),
                col("amount", "Float64"),
                col("day", "Date32"),
            ],
        ),
        (
            "silver.events",
            vec![col("id", "Int64"), col("day", "Date32")],
        ),
        (
            "gold.revenue",
            vec![col("day", "Date32"), col("revenue", "Float64")],
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn current(
    p: &Project,
    g: &Graph,
    columns: &BTreeMap<String, Vec<Column>>,
) -> BTreeMap<String, Current> {
    g.order()
        .iter()
        .map(|name| {
            let materialized = match p.models.get(name) {
                Some(m) => m.config.materialized.as_str().to_string(),
                None => "ingest".to_string(),
            };
            (
                name.clone(),
                Current {
                    fingerprint: fingerprint(p, g, name).expect("fingerprint"),
                    materialized,
                    columns: columns.get(name).cloned(),
                    contract_errors: vec![],
                    partitioned: false,
                },
            )
        })
        .collect()
}

/// What the baseline project deploys.
fn deployed() -> Vec<Deployed> {
    let (_d, p, g) = project(&[]);
    current(&p, &g, &base_columns())
        .into_iter()
        .map(|(name, c)| Deployed {
            name,
            fingerprint: c.fingerprint,
            materialized: c.materialized,
            columns: c.columns.unwrap_or_default(),
        })
        .collect()
}

fn plan_of(extra: &[(&str, &str)], columns: BTreeMap<String, Vec<Column>>) -> Plan {
    let (_d, p, g) = project(extra);
    diff(&g, &current(&p, &g, &columns), &deployed())
}

#[test]
fn nothing_deployed_builds_everything() {
    let (_d, p, g) = project(&[]);
    let plan = diff(&g, &current(&p, &g, &base_columns()), &[]);
    assert_eq!(plan.count(Change::Added), 4);
    assert!(!plan.breaking());
    insta::assert_snapshot!(plan.render());
}

#[test]
fn unchanged_project_keeps_everything() {
    // Layout and comments are not changes.
    let plan = plan_of(
        &[(
            "models/silver/orders.sql",
            "-- tidied\nSELECT id,\n       amount,\n       day\n  FROM bronze.orders",
        )],
        base_columns(),
    );
    assert_eq!(plan.count(Change::Unchanged), 4);
    insta::assert_snapshot!(plan.render());
}

#[test]
fn a_changed_model_affects_its_downstream() {
    let plan = plan_of(
        &[(
            "models/silver/orders.sql",
            "select id, amount, day from bronze.orders where amount > 0",
        )],
        base_columns(),
    );
    let by: BTreeMap<&str, &TablePlan> = plan.tables.iter().map(|t| (t.name.as_str(), t)).collect();
    assert_eq!(by["silver.orders"].change, Change::Changed);
    assert_eq!(by["silver.orders"].action, Action::Rebuild);
    assert_eq!(by["gold.revenue"].change, Change::Affected);
    assert_eq!(by["silver.events"].change, Change::Unchanged);
    assert!(!plan.breaking());
    insta::assert_snapshot!(plan.render());
}

#[test]
fn column_changes_are_classified() {
    let mut cols = base_columns();
    // id Int64 -> Int32 (narrowed), amount renamed to total, a new column,
    // day now never null.
    cols.insert(
        "silver.orders".into(),
        vec![
            col("id", "Int32"),
            col("total", "Float64"),
            Column {
                name: "day".into(),
                ty: "Date32".into(),
                nullable: false,
            },
            col("note", "Utf8"),
        ],
    );
    // revenue widened from Float32 is not breaking; here Float64 -> Decimal is.
    cols.insert("gold.revenue".into(), vec![col("day", "Date32")]);
    let plan = plan_of(
        &[
            (
                "models/silver/orders.sql",
                "select cast(id as int) as id, amount as total, day, 'x' as note from bronze.orders",
            ),
            ("models/gold/revenue.sql", "select day from silver.orders"),
        ],
        cols,
    );
    assert!(plan.breaking());
    let orders = &plan
        .tables
        .iter()
        .find(|t| t.name == "silver.orders")
        .expect("orders");
    assert_eq!(orders.breaking.len(), 2, "{:?}", orders.breaking);
    insta::assert_snapshot!(plan.render());
}

#[test]
fn widening_is_not_breaking() {
    assert!(widens("Int32", "Int64"));
    assert!(widens("Float32", "Float64"));
    assert!(widens("Decimal128(10, 2)", "Decimal128(15, 2)"));
    assert!(widens("Int32", "Decimal128(15, 2)"));
    assert!(!widens("Int64", "Int32"));
    assert!(!widens("Decimal128(15, 2)", "Decimal128(15, 4)"));
    assert!(!widens("Float64", "Int64"));
    assert!(!widens("Utf8", "Int64"));
    let changes = column_changes(&[col("a", "Int32")], &[col("a", "Int64")]);
    assert!(!changes[0].breaking());
    let changes = column_changes(&[col("a", "Utf8")], &[col("a", "Utf8View")]);
    assert!(changes.is_empty(), "string encodings are the same values");
}

#[test]
fn removed_models_and_history_keeping_models() {
    let plan = plan_of(
        &[
            ("models/gold/revenue.sql", ""),
            (
                "models/silver/events.sql",
                "/* materialized = \"incremental\"\nstrategy = \"append\" */\nselect id, day, 1 as one from bronze.orders",
            ),
        ],
        {
            let mut c = base_columns();
            c.insert(
                "silver.events".into(),
                vec![
                    col("id", "Int64"),
                    col("day", "Date32"),
                    col("one", "Int64"),
                ],
            );
            c
        },
    );
    let by: BTreeMap<&str, &TablePlan> = plan.tables.iter().map(|t| (t.name.as_str(), t)).collect();
    assert_eq!(by["gold.revenue"].change, Change::Removed);
    assert_eq!(by["silver.events"].action, Action::FullRefresh);
    assert!(plan.breaking(), "removing a table breaks its readers");
    insta::assert_snapshot!(plan.render());
}

#[test]
fn materialization_change_and_broken_contract() {
    let (_d, p, g) = project(&[(
        "models/gold/revenue.sql",
        "/* materialized = \"view\" */\nselect day, sum(amount) as revenue from silver.orders group by day",
    )]);
    let mut cur = current(&p, &g, &base_columns());
    cur.get_mut("gold.revenue")
        .expect("revenue")
        .contract_errors =
        vec!["contract: column `revenue` is Float64 but the contract says decimal(15,2)".into()];
    let plan = diff(&g, &cur, &deployed());
    assert!(plan.breaking());
    insta::assert_snapshot!(plan.render());
}
