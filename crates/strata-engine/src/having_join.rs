//! A physical optimizer rule for hash joins against a `HAVING` aggregate.
//!
//! Two common shapes join a table to the groups of an aggregate that a
//! `HAVING` clause filters:
//!
//! - deduplication, `with dup as (select k from t group by k having count(*) > 1)`,
//!   joined back to `t` to pass the other rows through and rank the duplicated;
//! - `IN` subqueries such as TPC-H Q18's `o_orderkey in (select l_orderkey …
//!   group by l_orderkey having sum(l_quantity) > 300)`.
//!
//! The filtered groups are usually few, yet DataFusion 55 has no estimate for
//! what a `HAVING` filter keeps: its estimate for the aggregate is close to its
//! input's size, and `JoinSelection` then builds the hash table on whichever
//! side looks a little smaller. For a dedup that is a coin toss decided by how
//! the table's rows split between files, and the losing side builds a hash
//! table of the whole table (11 GB for TPC-H SF1 lineitem instead of under
//! 1 GB); for Q18 it builds on the 6M-row join (1.2 GB instead of 0.4 GB).
//!
//! [`HavingJoin`] runs after `EnsureRequirements` and does two things:
//!
//! 1. A partitioned `Left`, `LeftSemi` or `LeftAnti` join (or one that
//!    collects its build side, when the aggregate is one partition, as in a
//!    session of one partition) whose probe side is
//!    such an aggregate and whose build side is not swaps its inputs (to
//!    `Right`, `RightSemi`, `RightAnti`), unless the build side is known to be
//!    smaller than what the aggregate is expected to keep (a fifth of its
//!    groups); a build side that joins is never taken to be known, as join
//!    estimates are guesses (150,000 rows for Q18's 6M). These join types
//!    keep no input order and hash-partition nothing, so no requirement of
//!    the plan above can depend on the old orientation.
//! 2. A partitioned `RightSemi` or `Inner` join that builds on such an
//!    aggregate and whose probe side is a sort (put there because the join
//!    keeps its probe side's order, e.g. for a window ranking the joined rows)
//!    sorts after the join instead: the join keeps few rows, so the sort is
//!    small, where below it sorts the whole table.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{JoinType, Result};
use datafusion::config::ConfigOptions;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, PartitionMode, SortMergeJoinExec,
    SymmetricHashJoinExec,
};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

/// The share of an aggregate's groups a `HAVING` filter is assumed to keep
/// (DataFusion's default filter selectivity, 20%), as a divisor.
const HAVING_KEEPS_ONE_IN: usize = 5;

/// Builds hash joins on the side of a `HAVING` aggregate (see the module docs).
#[derive(Debug, Default)]
pub struct HavingJoin;

impl PhysicalOptimizerRule for HavingJoin {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !config.optimizer.join_reordering {
            return Ok(plan);
        }
        let min_rows = config.optimizer.hash_join_single_partition_threshold_rows;
        plan.transform_up(|node| {
            let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            if let Some(swapped) = swap_to_having_side(join, min_rows)? {
                let lifted = sort_after_join(&swapped)?;
                return Ok(Transformed::yes(lifted.unwrap_or(swapped)));
            }
            Ok(match sort_after_join(&node)? {
                Some(lifted) => Transformed::yes(lifted),
                None => Transformed::no(node),
            })
        })
        .data()
    }

    fn name(&self) -> &str {
        "strata_having_join"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Step 1: the join with its inputs swapped, when it builds on a table and
/// probes with a `HAVING` aggregate.
fn swap_to_having_side(
    join: &HashJoinExec,
    min_rows: usize,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    // A join that collects its build side (the plan of a one-partition
    // session) swaps when the aggregate comes as one partition, as it then
    // does: its rows can be collected as they are.
    let mode = *join.partition_mode();
    let collect_one = mode == PartitionMode::CollectLeft
        && join.right().output_partitioning().partition_count() == 1;
    if !(mode == PartitionMode::Partitioned || collect_one)
        || join.null_aware
        || !matches!(
            join.join_type(),
            JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti
        )
    {
        return Ok(None);
    }
    let Some(kept) = having_rows(join.right())? else {
        return Ok(None);
    };
    if having_rows(join.left())?.is_some() {
        return Ok(None);
    }
    // Estimates through joins are guesses (DataFusion puts TPC-H Q18's 6M-row
    // join at 150,000 rows): only a side without joins is trusted as small.
    let build_rows = if has_join(join.left())? {
        None
    } else {
        rows(join.left())?
    };
    let swap = match (build_rows, kept) {
        (Some(build), Some(kept)) => build >= kept,
        (Some(build), None) => build >= min_rows,
        (None, _) => true,
    };
    if !swap {
        return Ok(None);
    }
    join.swap_inputs(mode).map(Some)
}

/// Step 2: the join with its probe side's sort moved above it, when it
/// builds on a `HAVING` aggregate and keeps only the matching probe rows.
fn sort_after_join(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(join) = node.downcast_ref::<HashJoinExec>() else {
        return Ok(None);
    };
    if *join.partition_mode() != PartitionMode::Partitioned
        || join.projection.is_some()
        || !matches!(join.join_type(), JoinType::RightSemi | JoinType::Inner)
    {
        return Ok(None);
    }
    let Some(sort) = join.right().downcast_ref::<SortExec>() else {
        return Ok(None);
    };
    if sort.fetch().is_some()
        || !sort.preserve_partitioning()
        || having_rows(join.left())?.is_none()
    {
        return Ok(None);
    }
    // The probe side's columns follow the build side's in an inner join's
    // output and are the whole output of a right semi join.
    let offset = match join.join_type() {
        JoinType::Inner => join.left().schema().fields().len(),
        _ => 0,
    };
    let mut shifted = Vec::with_capacity(sort.expr().len());
    for e in sort.expr().iter() {
        // Only plain columns: an expression would need rewriting.
        let Some(col) = e.expr.downcast_ref::<Column>() else {
            return Ok(None);
        };
        shifted.push(PhysicalSortExpr::new(
            Arc::new(Column::new(col.name(), col.index() + offset)),
            e.options,
        ));
    }
    let Some(ordering) = LexOrdering::new(shifted) else {
        return Ok(None);
    };
    let children = vec![Arc::clone(join.left()), Arc::clone(sort.input())];
    let rebuilt = replace_children_if_necessary(Arc::clone(node), children)?;
    Ok(Some(Arc::new(
        SortExec::new(ordering, rebuilt).with_preserve_partitioning(true),
    )))
}

/// The number of rows a `HAVING` aggregate is expected to keep (`Some(None)`
/// when unknown), or `None` when `plan` is not one: a filter over a grouped
/// aggregate, seen through repartitioning and projections.
fn having_rows(plan: &Arc<dyn ExecutionPlan>) -> Result<Option<Option<usize>>> {
    let mut node = plan;
    loop {
        let child = if let Some(p) = node.downcast_ref::<RepartitionExec>() {
            p.input()
        } else if let Some(p) = node.downcast_ref::<ProjectionExec>() {
            p.input()
        } else if let Some(p) = node.downcast_ref::<CoalescePartitionsExec>() {
            p.input()
        } else {
            break;
        };
        node = child;
    }
    let Some(filter) = node.downcast_ref::<FilterExec>() else {
        return Ok(None);
    };
    let mut below = filter.input();
    while let Some(p) = below.downcast_ref::<ProjectionExec>() {
        below = p.input();
    }
    let Some(agg) = below.downcast_ref::<AggregateExec>() else {
        return Ok(None);
    };
    if agg.group_expr().expr().is_empty() || matches!(agg.mode(), AggregateMode::Partial) {
        return Ok(None);
    }
    Ok(Some(rows(below)?.map(|n| n / HAVING_KEEPS_ONE_IN)))
}

/// Whether `plan` joins anything.
pub(crate) fn has_join(plan: &Arc<dyn ExecutionPlan>) -> Result<bool> {
    plan.exists(|n| {
        Ok(n.downcast_ref::<HashJoinExec>().is_some()
            || n.downcast_ref::<SortMergeJoinExec>().is_some()
            || n.downcast_ref::<NestedLoopJoinExec>().is_some()
            || n.downcast_ref::<CrossJoinExec>().is_some()
            || n.downcast_ref::<SymmetricHashJoinExec>().is_some())
    })
}

/// The estimated row count of `plan`'s whole output.
pub(crate) fn rows(plan: &Arc<dyn ExecutionPlan>) -> Result<Option<usize>> {
    let stats = StatisticsContext::new().compute(plan.as_ref(), &StatisticsArgs::new())?;
    Ok(stats.num_rows.get_value().copied())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::execution::SessionStateBuilder;
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

    use super::*;

    /// Deduplication as the TPC-H silver models write it: pass the unique
    /// keys through, rank the duplicated ones.
    pub(crate) const DEDUP: &str = "with dup as (
            select k as dk from t group by k having count(*) > 1
        )
        select k, v from (
            select b.k, b.v from dup d right join t b on d.dk = b.k where d.dk is null
            union all
            select k, v from (
                select b.k, b.v, row_number() over (partition by b.k order by b.ts desc) as rn
                from dup d join t b on d.dk = b.k
            ) ranked where rn = 1
        ) x order by k";

    /// TPC-H Q18's shape: rows whose key is in the groups a HAVING keeps.
    const IN_HAVING: &str = "select k, v from t
        where k in (select k from t group by k having count(*) > 1)
        order by k, v";

    /// Writes table `t` (k, v, ts): keys 0..2000, keys divisible by 100 twice
    /// (the later `ts` with value `new`), as two Parquet files.
    pub(crate) fn write_table(dir: &std::path::Path) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Utf8, false),
            Field::new("ts", DataType::Int64, false),
        ]));
        for (file, keys, ts, value) in [
            ("a.parquet", (0..2000).collect::<Vec<i64>>(), 1, "old"),
            ("b.parquet", (0..2000).step_by(100).collect(), 2, "new"),
        ] {
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from_iter_values(
                        keys.iter().map(|k| format!("{k:05}")),
                    )),
                    Arc::new(StringArray::from_iter_values(keys.iter().map(|_| value))),
                    Arc::new(Int64Array::from(vec![ts; keys.len()])),
                ],
            )
            .expect("batch");
            let f = std::fs::File::create(dir.join(file)).expect("file");
            let mut w = ArrowWriter::try_new(f, schema.clone(), None).expect("writer");
            w.write(&batch).expect("write");
            w.close().expect("close");
        }
    }

    /// Which physical optimizer rules a test session runs.
    pub(crate) enum Rules {
        /// DataFusion's.
        Plain,
        /// As `engine::build_session`: DataFusion's plus [`HavingJoin`].
        Strata,
        /// DataFusion's up to `EnsureRequirements`, where [`HavingJoin`] runs
        /// (later rules build dynamic filters, and joins cannot be swapped then).
        UntilHavingJoin,
    }

    /// A session with two partitions, no broadcast joins and the physical
    /// `rules` (also for `join_estimate`'s tests).
    pub(crate) fn context(
        rules: Vec<Arc<dyn datafusion::physical_optimizer::PhysicalOptimizerRule + Send + Sync>>,
    ) -> SessionContext {
        context_of(2, rules)
    }

    /// A session with `partitions` partitions, no broadcast joins (with more
    /// than one) and the physical `rules`.
    fn context_of(
        partitions: usize,
        rules: Vec<Arc<dyn datafusion::physical_optimizer::PhysicalOptimizerRule + Send + Sync>>,
    ) -> SessionContext {
        let config = SessionConfig::new()
            .with_target_partitions(partitions)
            .set_usize(
                "datafusion.optimizer.hash_join_single_partition_threshold",
                0,
            )
            .set_usize(
                "datafusion.optimizer.hash_join_single_partition_threshold_rows",
                0,
            );
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(config)
            .with_physical_optimizer_rules(rules)
            .build();
        SessionContext::new_with_state(state)
    }

    /// A session over `t` with two partitions and no broadcast joins.
    pub(crate) async fn session(dir: &std::path::Path, rules: Rules) -> SessionContext {
        session_of(dir, 2, rules).await
    }

    /// A session over `t` with `partitions` partitions.
    async fn session_of(dir: &std::path::Path, partitions: usize, rules: Rules) -> SessionContext {
        let rules = match rules {
            Rules::Plain => PhysicalOptimizer::new().rules,
            Rules::Strata => crate::engine::physical_rules(),
            Rules::UntilHavingJoin => crate::engine::physical_rules()
                .into_iter()
                .take_while(|r| r.name() != HavingJoin.name())
                .collect(),
        };
        let ctx = context_of(partitions, rules);
        ctx.register_parquet(
            "t",
            dir.to_str().expect("utf-8 path"),
            ParquetReadOptions::default(),
        )
        .await
        .expect("register t");
        ctx
    }

    /// Every hash join next to a HAVING aggregate, as (join type, the
    /// aggregate is the build side, the probe side is a sort).
    fn having_joins(plan: &Arc<dyn ExecutionPlan>) -> Vec<(JoinType, bool, bool)> {
        let mut found = Vec::new();
        plan.apply(|node| {
            if let Some(j) = node.downcast_ref::<HashJoinExec>() {
                let build = having_rows(j.left()).expect("stats").is_some();
                let probe = having_rows(j.right()).expect("stats").is_some();
                if build || probe {
                    found.push((
                        *j.join_type(),
                        build,
                        j.right().downcast_ref::<SortExec>().is_some(),
                    ));
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .expect("walk");
        found
    }

    /// `plan` through Strata's physical rules from the one named `first` on,
    /// as `ctx`'s session runs them.
    pub(crate) fn rules_from(
        first: &str,
        plan: Arc<dyn ExecutionPlan>,
        ctx: &SessionContext,
    ) -> Arc<dyn ExecutionPlan> {
        crate::engine::physical_rules()
            .into_iter()
            .skip_while(|r| r.name() != first)
            .fold(plan, |plan, rule| {
                rule.optimize(plan, ctx.state().config_options())
                    .expect("a physical optimizer rule")
            })
    }

    /// `plan`'s result as a table.
    pub(crate) async fn run(ctx: &SessionContext, plan: Arc<dyn ExecutionPlan>) -> String {
        let batches = collect(plan, ctx.task_ctx()).await.expect("execute");
        pretty_format_batches(&batches).expect("format").to_string()
    }

    /// The plan with every join that builds on a HAVING aggregate turned
    /// around: the orientation DataFusion picks when statistics tip it.
    fn build_on_table(plan: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        plan.transform_up(|node| {
            if let Some(j) = node.downcast_ref::<HashJoinExec>()
                && matches!(
                    j.partition_mode(),
                    PartitionMode::Partitioned | PartitionMode::CollectLeft
                )
                && matches!(
                    j.join_type(),
                    JoinType::Right | JoinType::RightSemi | JoinType::RightAnti
                )
                && having_rows(j.left())?.is_some()
            {
                return Ok(Transformed::yes(j.swap_inputs(*j.partition_mode())?));
            }
            Ok(Transformed::no(node))
        })
        .data()
        .expect("turn")
    }

    #[tokio::test]
    async fn joins_build_on_the_having_side_and_answer_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_table(dir.path());
        let plain = session(dir.path(), Rules::Plain).await;
        let strata = session(dir.path(), Rules::Strata).await;
        let early = session(dir.path(), Rules::UntilHavingJoin).await;
        for sql in [DEDUP, IN_HAVING] {
            let expected = {
                let df = plain.sql(sql).await.expect("plan");
                run(&plain, df.create_physical_plan().await.expect("physical")).await
            };
            // Through the session: every such join builds on the aggregate
            // and no sort of the whole table sits under one.
            let df = strata.sql(sql).await.expect("plan");
            let plan = df.create_physical_plan().await.expect("physical");
            let joins = having_joins(&plan);
            assert!(
                !joins.is_empty(),
                "no join next to a HAVING aggregate in {sql}"
            );
            for (join_type, on_build, probe_sorted) in &joins {
                assert!(on_build, "{join_type} join builds on the table in {sql}");
                assert!(!probe_sorted, "{join_type} join probes a sort in {sql}");
            }
            assert_eq!(run(&strata, plan).await, expected, "{sql}");

            // From the other orientation (DataFusion's own for the IN query;
            // turned around here for the dedup), the rule turns them back.
            let df = early.sql(sql).await.expect("plan");
            let turned = build_on_table(df.create_physical_plan().await.expect("physical"));
            assert!(
                having_joins(&turned)
                    .iter()
                    .any(|(_, on_build, _)| !on_build)
            );
            // HavingJoin and the rules after it, as the session runs them.
            let fixed = rules_from(HavingJoin.name(), turned, &strata);
            assert!(
                having_joins(&fixed)
                    .iter()
                    .all(|(_, on_build, _)| *on_build),
                "{sql}"
            );
            assert_eq!(run(&strata, fixed).await, expected, "{sql}");
        }
        // The dedup keeps one row per key, the later one for duplicated keys.
        let dedup = {
            let df = strata.sql(DEDUP).await.expect("plan");
            run(&strata, df.create_physical_plan().await.expect("physical")).await
        };
        assert_eq!(dedup.lines().filter(|l| l.contains("| new |")).count(), 20);
        assert_eq!(dedup.lines().filter(|l| l.starts_with("| 0")).count(), 2000);
    }

    #[tokio::test]
    async fn a_small_table_keeps_its_build_side() {
        // 3 rows against an aggregate expected to keep 400 groups.
        let dir = tempfile::tempdir().expect("tempdir");
        write_table(dir.path());
        let strata = session(dir.path(), Rules::Strata).await;
        strata
            .sql(
                "create table small as select * from (values ('00100'), ('00101'), ('00200')) s(k)",
            )
            .await
            .expect("small")
            .collect()
            .await
            .expect("create");
        let sql = "select k from small where k in (select k from t group by k having count(*) > 0)";
        let plan = strata
            .sql(sql)
            .await
            .expect("plan")
            .create_physical_plan()
            .await
            .expect("physical");
        assert_eq!(
            having_joins(&plan),
            vec![(JoinType::LeftSemi, false, false)]
        );
        let rows = run(&strata, plan).await;
        assert_eq!(
            rows.lines().filter(|l| l.starts_with("| 00")).count(),
            3,
            "{rows}"
        );
    }

    #[tokio::test]
    async fn one_partition_collects_the_having_side() {
        // One partition, as with `max_parallel = 1`: joins collect their
        // build side whole, and DataFusion collected TPC-H SF1 lineitem for
        // both dedup joins (8.6 GB). Turned that way here, the rule turns
        // them back.
        let dir = tempfile::tempdir().expect("tempdir");
        write_table(dir.path());
        let plain = session_of(dir.path(), 1, Rules::Plain).await;
        let strata = session_of(dir.path(), 1, Rules::Strata).await;
        let early = session_of(dir.path(), 1, Rules::UntilHavingJoin).await;
        let expected = {
            let df = plain.sql(DEDUP).await.expect("plan");
            run(&plain, df.create_physical_plan().await.expect("physical")).await
        };
        let df = early.sql(DEDUP).await.expect("plan");
        let turned = build_on_table(df.create_physical_plan().await.expect("physical"));
        let joins = having_joins(&turned);
        assert_eq!(joins.len(), 2, "{joins:?}");
        assert!(joins.iter().all(|(_, on_build, _)| !on_build), "{joins:?}");
        let fixed = rules_from(HavingJoin.name(), turned, &strata);
        let joins = having_joins(&fixed);
        assert_eq!(joins.len(), 2, "{joins:?}");
        assert!(joins.iter().all(|(_, on_build, _)| *on_build), "{joins:?}");
        assert_eq!(run(&strata, fixed).await, expected);
        // Through the session too.
        let df = strata.sql(DEDUP).await.expect("plan");
        let plan = df.create_physical_plan().await.expect("physical");
        assert!(having_joins(&plan).iter().all(|(_, on_build, _)| *on_build));
        assert_eq!(run(&strata, plan).await, expected);
    }
}
