//! `strata plan`: what a run would change against the deployed state, and
//! the same comparison behind a deferring target's run.

use std::collections::BTreeMap;

use serde::Serialize;
use strata_graph::plan::{Action, Backfill, Change, Column, Current, Deployed, Plan, diff};
use strata_graph::{Graph, NodeKind};
use strata_project::{Errors, Project};
use strata_state::StateStore;

/// Plans every model and compares the project with `state`'s deployments.
/// Fails with located errors when a model does not plan (a broken contract
/// is reported in the plan as a breaking change instead).
pub(crate) async fn compute(
    project: &Project,
    graph: &Graph,
    state: &StateStore,
) -> Result<Plan, PlanError> {
    let check = strata_engine::validate::check_plans(project, graph).await;
    let errors: Vec<_> = check
        .errors
        .0
        .iter()
        .filter(|e| !e.message.starts_with("contract:"))
        .cloned()
        .collect();
    if !errors.is_empty() {
        return Err(PlanError::Project(Errors(errors)));
    }
    let mut current = BTreeMap::new();
    for name in graph.order() {
        let Some(node) = graph.node(name) else {
            continue;
        };
        let (materialized, partitioned) = match &node.kind {
            NodeKind::Source(_) => ("ingest".to_string(), false),
            NodeKind::Model => match project.models.get(name) {
                Some(m) => (
                    m.config.materialized.as_str().to_string(),
                    m.config.partitioning.is_some(),
                ),
                None => continue,
            },
        };
        let Some(fingerprint) = strata_graph::plan::fingerprint(project, graph, name) else {
            continue;
        };
        current.insert(
            name.clone(),
            Current {
                fingerprint,
                materialized,
                columns: check.schemas.get(name).map(|s| {
                    s.fields()
                        .iter()
                        .map(|f| Column {
                            name: f.name().clone(),
                            ty: f.data_type().to_string(),
                            nullable: f.is_nullable(),
                        })
                        .collect()
                }),
                contract_errors: check.contracts.get(name).cloned().unwrap_or_default(),
                partitioned,
            },
        );
    }
    let deployed: Vec<Deployed> = state
        .deployments()
        .await
        .map_err(|e| PlanError::State(e.to_string()))?
        .into_iter()
        .map(|d| Deployed {
            name: d.name,
            fingerprint: d.fingerprint,
            materialized: d.materialized,
            columns: d
                .columns
                .into_iter()
                .map(|c| Column {
                    name: c.name,
                    ty: c.ty,
                    nullable: c.nullable,
                })
                .collect(),
        })
        .collect();
    let mut plan = diff(graph, &current, &deployed);
    // A partitioned model rebuilt as a whole must redo every interval it has.
    for t in &mut plan.tables {
        let partitioned = current.get(&t.name).is_some_and(|c| c.partitioned);
        let redo = matches!(t.action, Action::FullRefresh | Action::Rebuild)
            || (t.action == Action::Incremental && partitioned);
        if !partitioned || !redo {
            continue;
        }
        let intervals = state
            .interval_states(&t.name)
            .await
            .map_err(|e| PlanError::State(e.to_string()))?;
        if let (Some(first), Some(last)) = (intervals.first(), intervals.last()) {
            t.backfill = Some(Backfill {
                intervals: intervals.len(),
                first: first.0.clone(),
                last: last.0.clone(),
            });
        }
    }
    Ok(plan)
}

/// Why a plan could not be made.
pub(crate) enum PlanError {
    /// Models that do not plan.
    Project(Errors),
    /// The state store could not be read.
    State(String),
}

/// The JSON form of a plan, for CI bots.
#[derive(Serialize)]
struct PlanJson<'a> {
    target: Option<&'a str>,
    breaking: bool,
    added: usize,
    changed: usize,
    affected: usize,
    removed: usize,
    unchanged: usize,
    tables: &'a [strata_graph::plan::TablePlan],
}

/// Prints `plan` as text or JSON.
pub(crate) fn print(plan: &Plan, target: Option<&str>, json: bool) {
    if json {
        let out = PlanJson {
            target,
            breaking: plan.breaking(),
            added: plan.count(Change::Added),
            changed: plan.count(Change::Changed),
            affected: plan.count(Change::Affected),
            removed: plan.count(Change::Removed),
            unchanged: plan.count(Change::Unchanged),
            tables: &plan.tables,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&out).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
        return;
    }
    if let Some(t) = target {
        println!("Target {t}: the project on disk against what target {t} last deployed.\n");
    }
    print!("{}", plan.render());
}
