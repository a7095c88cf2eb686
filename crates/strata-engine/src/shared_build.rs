//! A physical optimizer rule that computes a repeated hash-join build side once.
//!
//! DataFusion inlines a common table expression at each place it is used, so
//! a CTE that two joins read is computed twice, and since the joins of one
//! plan collect their build sides at the same time, both copies are held at
//! once. The deduplicating shape of a silver model is the common case:
//! `with dup as (select k … group by k having count(*) > 1)` joined once to
//! pass the unique keys through and once to rank the duplicated ones. For
//! TPC-H SF1 lineitem the two key aggregations held ~900 MB side by side
//! where one held ~500 MB (DuckDB, which materializes such a CTE, computes
//! it once).
//!
//! [`ShareBuildSides`] finds hash joins whose build sides are the same plan
//! (same operators, expressions and files: the same displayed plan) and
//! gives them one [`SharedBuildExec`] in their place: the first join to ask
//! for a partition computes it, the others receive the same batches. A build
//! side is collected whole by its join anyway, so the shared copy adds at
//! most one buffered copy of it until every join has taken it (then it is
//! dropped). Subtrees that read a dynamic filter (pushed from a join above
//! them, different for each copy) are not shared. The rule runs last, on local
//! sessions only: the shared node has no codec to travel to a Ballista
//! cluster.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::config::ConfigOptions;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, displayable,
};
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt, TryStreamExt};

/// Gives hash joins whose build sides are the same plan one shared build side.
#[derive(Debug, Default)]
pub(crate) struct ShareBuildSides;

/// What identifies a build side: its displayed plan, or `None` when it
/// must not be shared (it reads a dynamic filter).
fn key_of(build: &Arc<dyn ExecutionPlan>) -> Option<String> {
    let shown = displayable(build.as_ref()).indent(true).to_string();
    (!shown.contains("DynamicFilter")).then_some(shown)
}

impl PhysicalOptimizerRule for ShareBuildSides {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut joins = 0;
        plan.apply(|node| {
            joins += usize::from(node.downcast_ref::<HashJoinExec>().is_some());
            Ok(TreeNodeRecursion::Continue)
        })?;
        if joins < 2 {
            // Most plans: nothing to share, nothing to display.
            return Ok(plan);
        }
        let mut uses: HashMap<String, usize> = HashMap::new();
        plan.apply(|node| {
            if let Some(join) = node.downcast_ref::<HashJoinExec>()
                && let Some(key) = key_of(join.left())
            {
                *uses.entry(key).or_default() += 1;
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        uses.retain(|_, n| *n > 1);
        if uses.is_empty() {
            return Ok(plan);
        }
        let mut shared: HashMap<String, Arc<dyn ExecutionPlan>> = HashMap::new();
        plan.transform_down(|node| {
            let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            let Some(key) = key_of(join.left()) else {
                return Ok(Transformed::no(node));
            };
            let Some(&consumers) = uses.get(&key) else {
                return Ok(Transformed::no(node));
            };
            let build = shared
                .entry(key)
                .or_insert_with(|| Arc::new(SharedBuildExec::new(join.left().clone(), consumers)))
                .clone();
            let right = join.right().clone();
            Ok(Transformed::yes(replace_children_if_necessary(
                node,
                vec![build, right],
            )?))
        })
        .data()
    }

    fn name(&self) -> &str {
        "ShareBuildSides"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// One partition's batches, computed once for every join that asks.
type Computed =
    Shared<BoxFuture<'static, std::result::Result<Arc<Vec<RecordBatch>>, Arc<DataFusionError>>>>;

/// A partition being computed, and how many joins have asked for it.
struct Slot {
    batches: Computed,
    taken: usize,
}

/// A build side several hash joins read: each partition is computed once
/// and handed to each of them. It shows no children, so later rules leave
/// the plan inside alone.
pub(crate) struct SharedBuildExec {
    input: Arc<dyn ExecutionPlan>,
    /// How many joins read it: a partition's batches are dropped here once
    /// that many have asked for it.
    consumers: usize,
    slots: Mutex<HashMap<usize, Slot>>,
}

impl SharedBuildExec {
    /// `input`, read by `consumers` joins.
    fn new(input: Arc<dyn ExecutionPlan>, consumers: usize) -> Self {
        Self {
            input,
            consumers,
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl fmt::Debug for SharedBuildExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBuildExec")
            .field("consumers", &self.consumers)
            .finish()
    }
}

impl DisplayAs for SharedBuildExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = displayable(self.input.as_ref()).indent(true);
        write!(f, "SharedBuildExec: joins={} [\n{inner}]", self.consumers)
    }
}

impl ExecutionPlan for SharedBuildExec {
    fn name(&self) -> &str {
        "SharedBuildExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        // The joins share this node: a rule that rebuilt the plan inside
        // would give each join its own copy again.
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "SharedBuildExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let batches = {
            let mut slots = self
                .slots
                .lock()
                .map_err(|_| DataFusionError::Internal("SharedBuildExec: lock poisoned".into()))?;
            if !slots.contains_key(&partition) {
                let stream = self.input.execute(partition, context)?;
                let computed: BoxFuture<'static, _> = async move {
                    stream
                        .try_collect::<Vec<_>>()
                        .await
                        .map(Arc::new)
                        .map_err(Arc::new)
                }
                .boxed();
                slots.insert(
                    partition,
                    Slot {
                        batches: computed.shared(),
                        taken: 0,
                    },
                );
            }
            let Some(slot) = slots.get_mut(&partition) else {
                return Err(DataFusionError::Internal("SharedBuildExec: no slot".into()));
            };
            slot.taken += 1;
            let batches = slot.batches.clone();
            if slot.taken >= self.consumers {
                // Every join has its handle: the batches go when they are done.
                slots.remove(&partition);
            }
            batches
        };
        let stream = futures::stream::once(batches)
            .map(|computed| match computed {
                Ok(batches) => {
                    futures::stream::iter(batches.iter().cloned().map(Ok).collect::<Vec<_>>())
                        .boxed()
                }
                Err(e) => {
                    futures::stream::once(async move { Err(DataFusionError::Shared(e)) }).boxed()
                }
            })
            .flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.input.schema(),
            stream,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // `Rules::Strata`: every session's rules but this one (`build_session`
    // adds it last).
    use crate::having_join::tests::{DEDUP, Rules, run, session, write_table};
    use datafusion::prelude::SessionContext;

    /// The build sides of `plan`'s hash joins that are shared.
    fn shared_builds(plan: &Arc<dyn ExecutionPlan>) -> usize {
        let mut n = 0;
        plan.apply(|node| {
            if let Some(j) = node.downcast_ref::<HashJoinExec>()
                && j.left().downcast_ref::<SharedBuildExec>().is_some()
            {
                n += 1;
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .expect("walk");
        n
    }

    /// A new physical plan of `sql` (a plan runs once: its repartitions
    /// keep state).
    async fn plan(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
        ctx.sql(sql)
            .await
            .expect("plan")
            .create_physical_plan()
            .await
            .expect("physical")
    }

    #[tokio::test]
    async fn a_cte_two_joins_build_on_is_computed_once_with_the_same_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_table(dir.path());
        let ctx = session(dir.path(), Rules::Strata).await;
        let unshared = plan(&ctx, DEDUP).await;
        assert_eq!(shared_builds(&unshared), 0);
        let expected = run(&ctx, unshared).await;
        assert_eq!(
            expected.lines().filter(|l| l.contains("| new |")).count(),
            20
        );

        let shared = ShareBuildSides
            .optimize(plan(&ctx, DEDUP).await, ctx.state().config_options())
            .expect("rule");
        assert_eq!(shared_builds(&shared), 2, "both dedup joins share `dup`");
        let shown = displayable(shared.as_ref()).indent(true).to_string();
        assert_eq!(
            shown.matches("SharedBuildExec: joins=2").count(),
            2,
            "{shown}"
        );
        assert_eq!(run(&ctx, shared).await, expected);
    }

    #[tokio::test]
    async fn different_build_sides_are_not_shared() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_table(dir.path());
        let ctx = session(dir.path(), Rules::Strata).await;
        let sql = "select a.k from (select k from t group by k having count(*) > 1) a
            join t on a.k = t.k
            union all
            select b.k from (select k from t group by k having count(*) > 2) b
            join t on b.k = t.k
            order by k";
        let expected = run(&ctx, plan(&ctx, sql).await).await;
        let shared = ShareBuildSides
            .optimize(plan(&ctx, sql).await, ctx.state().config_options())
            .expect("rule");
        assert_eq!(shared_builds(&shared), 0);
        assert_eq!(run(&ctx, shared).await, expected);
    }
}
