//! Column lineage for each SQL construct, planned over empty in-memory tables.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;

use super::*;

async fn lineage(sql: &str) -> ModelLineage {
    let ctx = crate::engine::session_context(2, Arc::default());
    let orders = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("day", DataType::Date32, true),
    ]);
    let customers = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("region", DataType::Utf8, true),
    ]);
    for (name, schema) in [("bronze.orders", orders), ("bronze.customers", customers)] {
        let t = MemTable::try_new(Arc::new(schema), vec![vec![]]).expect("mem table");
        ctx.register_table(name, Arc::new(t)).expect("register");
    }
    let df = ctx.sql(sql).await.expect("plans");
    plan_lineage(df.logical_plan())
}

/// `column <- table.col (copy|transform), …` per output column.
fn show(l: &ModelLineage) -> Vec<String> {
    l.iter()
        .map(|(c, edges)| {
            let from: Vec<String> = edges
                .iter()
                .map(|e| format!("{} {}", e.from, if e.copy { "copy" } else { "transform" }))
                .collect();
            format!("{c} <- {}", from.join(", "))
        })
        .collect()
}

#[tokio::test]
async fn select_star_copies_every_column() {
    let l = lineage("select * from bronze.orders").await;
    assert_eq!(
        show(&l),
        vec![
            "id <- bronze.orders.id copy",
            "customer_id <- bronze.orders.customer_id copy",
            "amount <- bronze.orders.amount copy",
            "day <- bronze.orders.day copy",
        ]
    );
}

#[tokio::test]
async fn joins_keep_each_side_apart() {
    let l = lineage(
        "select o.id, c.name as customer, o.amount * 2 as doubled, c.* \
         from bronze.orders o join bronze.customers c on o.customer_id = c.id",
    )
    .await;
    assert_eq!(
        show(&l),
        vec![
            "id <- bronze.orders.id copy",
            "customer <- bronze.customers.name copy",
            "doubled <- bronze.orders.amount transform",
            "id <- bronze.customers.id copy",
            "name <- bronze.customers.name copy",
            "region <- bronze.customers.region copy",
        ]
    );
    // A left join with SELECT * across both sides.
    let l = lineage(
        "select * from bronze.orders o left join bronze.customers c on o.customer_id = c.id",
    )
    .await;
    assert_eq!(l.len(), 7);
    assert_eq!(show(&l)[4], "id <- bronze.customers.id copy");
}

#[tokio::test]
async fn aggregates_copy_keys_and_transform_measures() {
    let l = lineage(
        "select c.region, sum(o.amount) as revenue, count(*) as n \
         from bronze.orders o join bronze.customers c on o.customer_id = c.id group by c.region",
    )
    .await;
    assert_eq!(
        show(&l),
        vec![
            "region <- bronze.customers.region copy",
            "revenue <- bronze.orders.amount transform",
            "n <- ",
        ]
    );
}

#[tokio::test]
async fn ctes_and_subquery_aliases_are_followed() {
    let l = lineage(
        "with big as (select id, amount, amount + 1 as more from bronze.orders where amount > 10), \
         again as (select id as order_id, more from big) \
         select order_id, more from again",
    )
    .await;
    assert_eq!(
        show(&l),
        vec![
            "order_id <- bronze.orders.id copy",
            "more <- bronze.orders.amount transform",
        ]
    );
}

#[tokio::test]
async fn unions_merge_their_branches() {
    let l = lineage(
        "select id, name as label from bronze.customers \
         union all select id, cast(amount as varchar) as label from bronze.orders",
    )
    .await;
    assert_eq!(
        show(&l),
        vec![
            "id <- bronze.customers.id copy, bronze.orders.id copy",
            "label <- bronze.customers.name copy, bronze.orders.amount transform",
        ]
    );
}

#[tokio::test]
async fn window_functions_transform_their_inputs() {
    let l = lineage(
        "select id, sum(amount) over (partition by customer_id order by day) as running \
         from bronze.orders",
    )
    .await;
    assert_eq!(
        show(&l),
        vec![
            "id <- bronze.orders.id copy",
            "running <- bronze.orders.amount transform, bronze.orders.customer_id transform, bronze.orders.day transform",
        ]
    );
}

#[tokio::test]
async fn scalar_subqueries_count_as_origins() {
    let l =
        lineage("select id, (select max(amount) from bronze.orders) as top from bronze.customers")
            .await;
    assert_eq!(
        show(&l),
        vec![
            "id <- bronze.customers.id copy",
            "top <- bronze.orders.amount transform",
        ]
    );
}

#[tokio::test]
async fn lineage_composes_through_layers_both_ways() {
    let silver = lineage(
        "select o.id, o.amount, c.region from bronze.orders o join bronze.customers c on o.customer_id = c.id",
    )
    .await;
    // gold reads silver.orders: plan it over a table of silver's output.
    let gold: ModelLineage = vec![
        (
            "region".into(),
            vec![Edge {
                from: ColumnRef {
                    table: "silver.orders".into(),
                    column: "region".into(),
                },
                copy: true,
            }],
        ),
        (
            "revenue".into(),
            vec![Edge {
                from: ColumnRef {
                    table: "silver.orders".into(),
                    column: "amount".into(),
                },
                copy: false,
            }],
        ),
    ];
    let g = ColumnGraph::new(&BTreeMap::from([
        ("silver.orders".to_string(), silver),
        ("gold.revenue".to_string(), gold),
    ]));
    let up = g.upstream(&ColumnRef {
        table: "gold.revenue".into(),
        column: "revenue".into(),
    });
    let shown: Vec<String> = up
        .iter()
        .map(|r| format!("{} {} {}", r.depth, r.column, r.copy))
        .collect();
    assert_eq!(
        shown,
        vec![
            "1 silver.orders.amount false",
            "2 bronze.orders.amount false"
        ]
    );
    let up = g.upstream(&ColumnRef {
        table: "gold.revenue".into(),
        column: "region".into(),
    });
    assert!(up.iter().all(|r| r.copy), "{up:?}");
    let down = g.downstream(&ColumnRef {
        table: "bronze.orders".into(),
        column: "amount".into(),
    });
    let names: Vec<String> = down.iter().map(|r| r.column.to_string()).collect();
    assert_eq!(names, vec!["silver.orders.amount", "gold.revenue.revenue"]);
    assert!(down[0].copy && !down[1].copy);
}
