//! The lake table's pruning and answers, and how plans are cut, without a
//! cluster (the CLI tests run real ones).

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;

use super::table::LakeTable;
use super::{Cluster, Cut};

fn batch(day: &str, ids: std::ops::Range<i64>) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("day", DataType::Utf8, true),
    ]));
    let n = ids.clone().count();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(ids)),
            Arc::new(StringArray::from(vec![day; n])),
        ],
    )
    .expect("batch")
}

/// A table partitioned by `day`: three days of 100 ids each, one file per day.
async fn table(dir: &std::path::Path, config: &[(&str, &str)]) -> DeltaTable {
    let url = url::Url::from_directory_path(dir).expect("url");
    let mut t = DeltaTable::try_from_url(url).await.expect("open");
    for (i, day) in ["2024-01-01", "2024-01-02", "2024-01-03"]
        .iter()
        .enumerate()
    {
        let start = i as i64 * 100;
        t = t
            .write(vec![batch(day, start..start + 100)])
            .with_partition_columns(["day"])
            .with_configuration(config.iter().map(|(k, v)| (*k, Some(*v))))
            .await
            .expect("write");
    }
    t
}

/// Files a plan scans.
fn files_scanned(plan: &Arc<dyn ExecutionPlan>) -> usize {
    let text = datafusion::physical_plan::displayable(plan.as_ref())
        .indent(true)
        .to_string();
    text.matches(".parquet").count()
}

async fn query(ctx: &SessionContext, sql: &str) -> (Vec<String>, usize) {
    let df = ctx.sql(sql).await.expect("plan");
    let plan = df
        .clone()
        .create_physical_plan()
        .await
        .expect("physical plan");
    let batches = df.collect().await.expect("run");
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .expect("format")
        .to_string();
    (
        text.lines().map(str::to_string).collect(),
        files_scanned(&plan),
    )
}

#[tokio::test]
async fn a_lake_table_answers_as_delta_rs_does_and_prunes_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = table(dir.path(), &[]).await;
    let lake = SessionContext::new();
    lake.register_table(
        "t",
        Arc::new(LakeTable::try_new("t", &t, None).expect("lake table")),
    )
    .expect("register");
    let delta = SessionContext::new();
    delta
        .register_table("t", t.table_provider().await.expect("provider"))
        .expect("register");
    for sql in [
        "select day, count(*), sum(id) from t group by day order by day",
        "select * from t where day = '2024-01-02' and id % 10 = 0 order by id",
        "select count(*) from t where id >= 250",
    ] {
        assert_eq!(
            query(&lake, sql).await.0,
            query(&delta, sql).await.0,
            "{sql}"
        );
    }
    // Partition values prune files before any is opened, and so do the
    // log's min/max statistics.
    assert_eq!(query(&lake, "select * from t").await.1, 3);
    assert_eq!(
        query(&lake, "select * from t where day = '2024-01-02'")
            .await
            .1,
        1
    );
    assert_eq!(query(&lake, "select * from t where id >= 250").await.1, 1);
    assert_eq!(query(&lake, "select * from t where id < 0").await.1, 0);
    // The planner gets the row count from the log.
    use datafusion::catalog::TableProvider as _;
    let stats = LakeTable::try_new("t", &t, None)
        .expect("lake table")
        .statistics()
        .expect("statistics");
    assert_eq!(stats.num_rows.get_value(), Some(&300));
}

#[tokio::test]
async fn a_lake_table_names_the_files_a_predicate_may_touch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = table(dir.path(), &[]).await;
    let lake = LakeTable::try_new("t", &t, None).expect("lake table");
    let ctx = SessionContext::new();
    let schema =
        datafusion::common::DFSchema::try_from(datafusion::catalog::TableProvider::schema(&lake))
            .expect("schema");
    let files = |sql: &str| {
        let expr = ctx.parse_sql_expr(sql, &schema).expect("expr");
        let mut f = lake
            .files_matching(&ctx.state(), expr)
            .expect("files matching");
        f.sort();
        f
    };
    let all = files("true");
    assert_eq!(all.len(), 3, "{all:?}");
    // By partition value, and by the log's min/max of a column.
    let late = files("day >= '2024-01-02'");
    assert_eq!(late, all[1..].to_vec());
    assert!(late.iter().all(|f| !f.starts_with('/')), "{late:?}");
    assert_eq!(files("id >= 250 and id < 260").len(), 1);
    assert!(files("id < 0").is_empty());
    // The files named are the log's: reading only them reads those rows.
    let only = LakeTable::try_new("t", &t, Some(&late)).expect("lake table");
    ctx.register_table("late", Arc::new(only))
        .expect("register");
    let (rows, _) = query(&ctx, "select count(*) as n, min(day) as d from late").await;
    assert!(
        rows.iter()
            .any(|l| l.contains("200") && l.contains("2024-01-02")),
        "{rows:?}"
    );
}

#[tokio::test]
async fn timestamps_prune_files_by_widened_bounds_and_answer_exactly() {
    use datafusion::arrow::array::TimestampMicrosecondArray;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = url::Url::from_directory_path(dir.path()).expect("url");
    let mut t = DeltaTable::try_from_url(url).await.expect("open");
    let schema = Arc::new(Schema::new(vec![Field::new(
        "ts",
        DataType::Timestamp(
            datafusion::arrow::datatypes::TimeUnit::Microsecond,
            Some("UTC".into()),
        ),
        true,
    )]));
    // 10:00:00.000700 and 10:59:59.995 in one file, 11:00:00 in another.
    let hour = 3_600_000_000i64;
    let base = 1_704_103_200_000_000i64; // 2024-01-01T10:00:00Z
    for values in [vec![base + 700, base + hour - 5_000], vec![base + hour]] {
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(
                TimestampMicrosecondArray::from(values).with_timezone("UTC"),
            )],
        )
        .expect("batch");
        t = t.write(vec![b]).await.expect("write");
    }
    let lake = LakeTable::try_new("t", &t, None).expect("lake table");
    let ctx = SessionContext::new();
    let df_schema =
        datafusion::common::DFSchema::try_from(datafusion::catalog::TableProvider::schema(&lake))
            .expect("schema");
    let files = |sql: &str| {
        let expr = ctx.parse_sql_expr(sql, &df_schema).expect("expr");
        lake.files_matching(&ctx.state(), expr)
            .expect("files matching")
            .len()
    };
    let at = |h: u32| format!("'2024-01-01T{h:02}:00:00Z'::timestamp");
    assert_eq!(files("true"), 2);
    assert_eq!(files(&format!("ts >= {} and ts < {}", at(11), at(12))), 1);
    assert_eq!(files(&format!("ts >= {} and ts < {}", at(10), at(11))), 1);
    assert_eq!(files(&format!("ts >= {}", at(12))), 0);
    // The widened bounds are not taken for values.
    ctx.register_table("t", Arc::new(lake)).expect("register");
    let (rows, _) = query(&ctx, "select min(ts) as lo, max(ts) as hi from t").await;
    let text = rows.join("\n");
    assert!(
        text.contains("2024-01-01T10:00:00.000700Z") && text.contains("2024-01-01T11:00:00Z"),
        "{text}"
    );
}

#[tokio::test]
async fn a_lake_table_refuses_reader_features_it_cannot_honour() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = table(dir.path(), &[("delta.enableDeletionVectors", "true")]).await;
    let err = LakeTable::try_new("silver.t", &t, None).expect_err("deletion vectors refused");
    let msg = err.to_string();
    assert!(
        msg.contains("silver.t") && msg.contains("deletionVectors"),
        "{msg}"
    );
}

#[tokio::test]
async fn plans_are_cut_where_an_operator_cannot_travel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = table(dir.path(), &[]).await;
    let ctx = SessionContext::new();
    ctx.register_table(
        "lake",
        Arc::new(LakeTable::try_new("lake", &t, None).expect("lake table")),
    )
    .expect("register");
    ctx.register_table("delta", t.table_provider().await.expect("provider"))
        .expect("register");
    let cluster = Cluster::new("ballista://127.0.0.1:1", false);
    let cut = |plan| {
        let mut cut = Cut {
            codec: Default::default(),
            cluster: &cluster,
            local: Default::default(),
        };
        let plan = cut.distribute(plan, true).expect("cut");
        (plan, cut.local)
    };
    let physical = |sql: &'static str| {
        let ctx = ctx.clone();
        async move {
            ctx.sql(sql)
                .await
                .expect("plan")
                .create_physical_plan()
                .await
                .expect("physical plan")
        }
    };
    let shown = |plan: &Arc<dyn ExecutionPlan>| {
        datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string()
    };
    // A lake table's plan travels whole: one job, its rows spread again
    // over the session's partitions (for the writer) unless ordered.
    let (plan, local) = cut(physical("select day, count(*) from lake group by day").await);
    let text = shown(&plan);
    assert_eq!(text.matches("ClusterExec:").count(), 1, "{text}");
    assert!(
        text.starts_with("ClusterExec") || text.starts_with("RepartitionExec"),
        "{text}"
    );
    assert!(local.is_empty(), "{local:?}");
    let (plan, _) = cut(physical("select id from lake order by id").await);
    assert_eq!(plan.name(), "ClusterExec", "{}", shown(&plan));
    // delta-rs's scan has no codec: it stays here, and is named.
    let (plan, local) = cut(physical("select l.id from lake l join delta d on l.id = d.id").await);
    assert_ne!(plan.name(), "ClusterExec");
    assert!(local.iter().any(|n| n.contains("Delta")), "{local:?}");
    let text = datafusion::physical_plan::displayable(plan.as_ref())
        .indent(true)
        .to_string();
    assert!(
        text.contains("ClusterExec"),
        "the lake side should still travel:\n{text}"
    );
}
