//! A physical optimizer rule for hash joins that build on another join.
//!
//! DataFusion 55 estimates a join's output from column statistics it rarely
//! has (distinct counts; Delta files carry none), so the estimate of a join
//! is absent or a guess, and `JoinSelection` keeps the query's order for a
//! join of a join with a table: it builds its hash table on the inner join.
//! When that table is small (the lineitems one increment added, the few
//! orders a filter keeps) and the inner join is a fact table joined to its
//! dimensions, the hash table holds millions of rows where it could hold
//! thousands: an incremental model over 60,000 new TPC-H lineitems built on
//! customer ⋈ orders, 1.65M rows and 345 MB.
//!
//! [`JoinEstimate`] runs right after `JoinSelection`, before any
//! repartitioning or sort is placed. It takes a join's output to be about
//! the size of its largest input (a key joined to the dimension it names
//! keeps the fact side's rows), and turns a partitioned inner join around
//! when its build side joins and its probe side is a plain (filtered) table
//! estimated at under a fifth of the build side's largest input (broadcast,
//! as `JoinSelection` does, when under its thresholds). The margin
//! is for filters on the dimensions, which make the join smaller than its
//! largest input. `EnsureRequirements`, which runs later, places the
//! partitioning and sorts the turned join needs, as for `JoinSelection`'s own
//! swaps.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{JoinType, Result};
use datafusion::config::ConfigOptions;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};

use crate::having_join::{has_join, rows};

/// How much smaller than the build side's largest input a plain table must
/// be estimated to take the build side from a join, as a divisor.
const SMALLER_BY: usize = 5;

/// Builds inner joins of a join and a small table on the table (see the
/// module docs).
#[derive(Debug, Default)]
pub struct JoinEstimate;

impl PhysicalOptimizerRule for JoinEstimate {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !config.optimizer.join_reordering {
            return Ok(plan);
        }
        plan.transform_up(|node| {
            let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            Ok(match build_on_table(join, config)? {
                Some(swapped) => Transformed::yes(swapped),
                None => Transformed::no(node),
            })
        })
        .data()
    }

    fn name(&self) -> &str {
        "strata_join_estimate"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The join with its inputs swapped, when it builds on a join and probes a
/// table estimated much smaller than that join's largest input.
fn build_on_table(
    join: &HashJoinExec,
    config: &ConfigOptions,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if *join.partition_mode() != PartitionMode::Partitioned
        || join.null_aware
        || *join.join_type() != JoinType::Inner
        || !has_join(join.left())?
        || has_join(join.right())?
    {
        return Ok(None);
    }
    let stats = StatisticsContext::new().compute(join.right().as_ref(), &StatisticsArgs::new())?;
    let (Some(&table), Some(largest)) = (stats.num_rows.get_value(), largest_input(join.left())?)
    else {
        return Ok(None);
    };
    if table.saturating_mul(SMALLER_BY) >= largest {
        return Ok(None);
    }
    // A table small enough to broadcast is, as JoinSelection would have.
    let small = match stats.total_byte_size.get_value() {
        Some(bytes) => *bytes < config.optimizer.hash_join_single_partition_threshold,
        None => table < config.optimizer.hash_join_single_partition_threshold_rows,
    };
    let mode = if small {
        PartitionMode::CollectLeft
    } else {
        PartitionMode::Partitioned
    };
    join.swap_inputs(mode).map(Some)
}

/// The largest estimated row count among the join-free parts `plan` joins
/// (its tables, filtered); `None` when none has an estimate.
fn largest_input(plan: &Arc<dyn ExecutionPlan>) -> Result<Option<usize>> {
    if !has_join(plan)? {
        return rows(plan);
    }
    let mut largest = None;
    for child in plan.children() {
        if let Some(n) = largest_input(child)? {
            largest = Some(largest.map_or(n, |l: usize| l.max(n)));
        }
    }
    Ok(largest)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
    use datafusion::prelude::{ParquetReadOptions, SessionContext};

    use super::*;
    use crate::having_join::tests::{context, rules_from, run};

    /// A fact table joined to its dimension, then to a few keys: the shape
    /// of an incremental model joining new lineitems to orders ⋈ customer.
    const SQL: &str = "select s.k, f.v, d.name from d, f, s
        where d.id = f.d and f.k = s.k order by s.k, f.v";

    /// Writes `DIR/NAME/data.parquet` with int64 and text columns.
    fn write(dir: &std::path::Path, name: &str, cols: Vec<(&str, Vec<i64>)>, text: (&str, usize)) {
        let n = cols[0].1.len();
        let mut fields: Vec<Field> = cols
            .iter()
            .map(|(c, _)| Field::new(*c, DataType::Int64, false))
            .collect();
        fields.push(Field::new(text.0, DataType::Utf8, false));
        let schema = Arc::new(Schema::new(fields));
        let mut arrays: Vec<Arc<dyn datafusion::arrow::array::Array>> = cols
            .into_iter()
            .map(|(_, v)| Arc::new(Int64Array::from(v)) as _)
            .collect();
        arrays.push(Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| format!("{}-{}", text.0, i % text.1.max(1))),
        )));
        let batch = RecordBatch::try_new(schema.clone(), arrays).expect("batch");
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder).expect("folder");
        let f = std::fs::File::create(folder.join("data.parquet")).expect("file");
        let mut w = ArrowWriter::try_new(f, schema, None).expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
    }

    /// A session over `d` (100 rows), `f` (20,000) and `s` (10), with two
    /// partitions, no broadcast joins and the physical `rules`.
    async fn session(
        dir: &std::path::Path,
        rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>>,
    ) -> SessionContext {
        let ctx = context(rules);
        for t in ["d", "f", "s"] {
            let path = dir.join(t);
            ctx.register_parquet(
                t,
                path.to_str().expect("utf-8 path"),
                ParquetReadOptions::default(),
            )
            .await
            .expect("register");
        }
        ctx
    }

    /// For every partitioned inner hash join of a join and a table: whether
    /// it builds on the table.
    fn builds_on_table(plan: &Arc<dyn ExecutionPlan>) -> Vec<bool> {
        let mut found = Vec::new();
        plan.apply(|node| {
            if let Some(j) = node.downcast_ref::<HashJoinExec>()
                && *j.partition_mode() == PartitionMode::Partitioned
                && *j.join_type() == JoinType::Inner
            {
                let (l, r) = (
                    has_join(j.left()).expect("walk"),
                    has_join(j.right()).expect("walk"),
                );
                if l != r {
                    found.push(r);
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .expect("walk");
        found
    }

    #[tokio::test]
    async fn a_join_of_a_join_builds_on_the_small_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dir = dir.path();
        write(dir, "d", vec![("id", (0..100).collect())], ("name", 100));
        write(
            dir,
            "f",
            vec![
                ("k", (0..20_000).collect()),
                ("d", (0..20_000).map(|i| i % 100).collect()),
            ],
            ("v", 7),
        );
        write(
            dir,
            "s",
            vec![("k", (0..10).map(|i| i * 1_000).collect())],
            ("x", 1),
        );

        let plain = session(dir, PhysicalOptimizer::new().rules).await;
        let expected = {
            let df = plain.sql(SQL).await.expect("plan");
            run(&plain, df.create_physical_plan().await.expect("physical")).await
        };
        assert_eq!(
            expected.lines().filter(|l| l.contains("| name-")).count(),
            10
        );

        // The rules up to and including JoinEstimate, then the plan turned
        // back to build on the join (as DataFusion does when its estimate
        // of the join is small or absent), then JoinEstimate again and the
        // rules after it: the join builds on the table and answers the same.
        let strata = session(dir, crate::engine::physical_rules()).await;
        let df = strata.sql(SQL).await.expect("plan");
        let plan = df.create_physical_plan().await.expect("physical");
        assert_eq!(builds_on_table(&plan), vec![true]);
        assert_eq!(run(&strata, plan).await, expected);

        let until: Vec<_> = crate::engine::physical_rules()
            .into_iter()
            .take_while(|r| r.name() != JoinEstimate.name())
            .collect();
        let early = session(dir, until).await;
        let df = early.sql(SQL).await.expect("plan");
        let turned = df
            .create_physical_plan()
            .await
            .expect("physical")
            .transform_up(|node| {
                if let Some(j) = node.downcast_ref::<HashJoinExec>()
                    && *j.join_type() == JoinType::Inner
                    && !has_join(j.left())?
                    && has_join(j.right())?
                {
                    return Ok(Transformed::yes(j.swap_inputs(PartitionMode::Partitioned)?));
                }
                Ok(Transformed::no(node))
            })
            .data()
            .expect("turn");
        assert_eq!(builds_on_table(&turned), vec![false]);
        let fixed = rules_from(JoinEstimate.name(), turned, &strata);
        assert_eq!(builds_on_table(&fixed), vec![true]);
        assert_eq!(run(&strata, fixed).await, expected);
    }
}
