//! Column-level lineage, read from the DataFusion logical plan of each model:
//! for every output column, the columns of the tables the model reads that it
//! derives from, and whether it is a copy (the value passed through unchanged)
//! or a transformation. Joins, aggregates, CTEs, unions, window functions,
//! subqueries and `SELECT *` are followed through the plan; composing the
//! models' lineages gives lineage through every layer ([`ColumnGraph`]).

use std::collections::{BTreeMap, BTreeSet};

use datafusion::common::Column;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};
use serde::Serialize;

/// A column of a table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ColumnRef {
    /// `silver.orders`.
    pub table: String,
    /// `amount`.
    pub column: String,
}

impl std::fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.table, self.column)
    }
}

/// Where one column's values come from, one step upstream.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Edge {
    /// The upstream column.
    pub from: ColumnRef,
    /// The value is passed through unchanged (else it is computed from it).
    pub copy: bool,
}

/// The direct origins of each output column of one model, in output order.
pub type ModelLineage = Vec<(String, Vec<Edge>)>;

/// Origins of one column inside a plan: upstream column → is a copy.
type Origins = BTreeMap<ColumnRef, bool>;

/// The lineage of each output column of `plan`.
pub fn plan_lineage(plan: &LogicalPlan) -> ModelLineage {
    let origins = walk(plan);
    plan.schema()
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let edges = origins
                .get(i)
                .map(|o| {
                    o.iter()
                        .map(|(from, copy)| Edge {
                            from: from.clone(),
                            copy: *copy,
                        })
                        .collect()
                })
                .unwrap_or_default();
            (f.name().clone(), edges)
        })
        .collect()
}

/// One `Origins` per output field of `plan`.
fn walk(plan: &LogicalPlan) -> Vec<Origins> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let table = scan.table_name.to_string();
            scan.projected_schema
                .fields()
                .iter()
                .map(|f| {
                    Origins::from([(
                        ColumnRef {
                            table: table.clone(),
                            column: f.name().clone(),
                        },
                        true,
                    )])
                })
                .collect()
        }
        LogicalPlan::Projection(p) => {
            let input = walk(&p.input);
            p.expr
                .iter()
                .map(|e| expr_origins(e, &input, &p.input))
                .collect()
        }
        LogicalPlan::Aggregate(a) => {
            let input = walk(&a.input);
            let n = a.schema.fields().len();
            let groups: Vec<&Expr> = if a.group_expr.len() + a.aggr_expr.len() == n {
                a.group_expr.iter().collect()
            } else {
                datafusion::logical_expr::utils::grouping_set_to_exprlist(&a.group_expr)
                    .unwrap_or_default()
            };
            let mut out: Vec<Origins> = groups
                .iter()
                .map(|e| expr_origins(e, &input, &a.input))
                .collect();
            // A grouping-set id column, if any, comes from no table.
            while out.len() + a.aggr_expr.len() < n {
                out.push(Origins::new());
            }
            out.extend(
                a.aggr_expr
                    .iter()
                    .map(|e| transformed(expr_origins(e, &input, &a.input))),
            );
            out
        }
        LogicalPlan::Window(w) => {
            let mut out = walk(&w.input);
            let input = out.clone();
            out.extend(
                w.window_expr
                    .iter()
                    .map(|e| transformed(expr_origins(e, &input, &w.input))),
            );
            out
        }
        LogicalPlan::Join(j) => {
            let left = walk(&j.left);
            let right = walk(&j.right);
            let n = j.schema.fields().len();
            let (l, r) = (left.len(), right.len());
            let mut out: Vec<Origins> = if n >= l + r {
                left.into_iter().chain(right).collect()
            } else if n == l || n == l + 1 {
                left // semi, anti and mark joins keep one side
            } else {
                right
            };
            out.resize(n, Origins::new());
            out
        }
        LogicalPlan::Union(u) => {
            let n = u.schema.fields().len();
            let inputs: Vec<Vec<Origins>> = u.inputs.iter().map(|i| walk(i)).collect();
            (0..n)
                .map(|i| merge(inputs.iter().filter_map(|o| o.get(i))))
                .collect()
        }
        LogicalPlan::RecursiveQuery(r) => {
            let a = walk(&r.static_term);
            let b = walk(&r.recursive_term);
            (0..r.schema.fields().len())
                .map(|i| merge([a.get(i), b.get(i)].into_iter().flatten()))
                .collect()
        }
        LogicalPlan::Distinct(datafusion::logical_expr::Distinct::On(d)) => {
            let input = walk(&d.input);
            d.select_expr
                .iter()
                .map(|e| expr_origins(e, &input, &d.input))
                .collect()
        }
        LogicalPlan::Unnest(u) => {
            let input = walk(&u.input);
            let unnested: BTreeSet<usize> = u
                .list_type_columns
                .iter()
                .map(|(i, _)| *i)
                .chain(u.struct_type_columns.iter().copied())
                .collect();
            u.dependency_indices
                .iter()
                .map(|&i| {
                    let o = input.get(i).cloned().unwrap_or_default();
                    if unnested.contains(&i) {
                        transformed(o)
                    } else {
                        o
                    }
                })
                .collect()
        }
        LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => {
            vec![Origins::new(); plan.schema().fields().len()]
        }
        other => {
            // Filter, Sort, Limit, Repartition, SubqueryAlias, Distinct::All,
            // Subquery and the like keep their single input's columns; for
            // anything else every output column depends on every input column.
            let n = other.schema().fields().len();
            let inputs = other.inputs();
            if let [input] = inputs.as_slice() {
                let origins = walk(input);
                if origins.len() == n {
                    return origins;
                }
                let all = transformed(merge(origins.iter()));
                return vec![all; n];
            }
            let all = transformed(merge(
                inputs
                    .iter()
                    .flat_map(|i| walk(i))
                    .collect::<Vec<_>>()
                    .iter(),
            ));
            vec![all; n]
        }
    }
}

/// The origins of `expr` evaluated over `input` (whose origins are `origins`).
fn expr_origins(expr: &Expr, origins: &[Origins], input: &LogicalPlan) -> Origins {
    let mut inner = expr;
    while let Expr::Alias(a) = inner {
        inner = &a.expr;
    }
    if let Expr::Column(c) = inner {
        return column_origins(c, origins, input);
    }
    let mut out = Origins::new();
    let _ = inner.apply(|e| {
        match e {
            Expr::Column(c) => {
                for k in column_origins(c, origins, input).into_keys() {
                    out.insert(k, false);
                }
            }
            Expr::ScalarSubquery(s) => {
                for o in walk(&s.subquery) {
                    for k in o.into_keys() {
                        out.insert(k, false);
                    }
                }
                return Ok(TreeNodeRecursion::Jump);
            }
            Expr::InSubquery(s) => {
                for o in walk(&s.subquery.subquery) {
                    for k in o.into_keys() {
                        out.insert(k, false);
                    }
                }
            }
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

fn column_origins(c: &Column, origins: &[Origins], input: &LogicalPlan) -> Origins {
    input
        .schema()
        .maybe_index_of_column(c)
        .and_then(|i| origins.get(i).cloned())
        .unwrap_or_default()
}

/// The same origins, none of them a copy.
fn transformed(o: Origins) -> Origins {
    o.into_keys().map(|k| (k, false)).collect()
}

/// Origins reached along several paths: a copy only if a copy on every path
/// that reaches it.
fn merge<'a>(all: impl IntoIterator<Item = &'a Origins>) -> Origins {
    let mut out = Origins::new();
    for o in all {
        for (k, copy) in o {
            out.entry(k.clone())
                .and_modify(|c| *c = *c && *copy)
                .or_insert(*copy);
        }
    }
    out
}

/// Lineage through every layer: each model's column edges, composed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ColumnGraph {
    /// Each model column's direct origins.
    edges: BTreeMap<ColumnRef, Vec<Edge>>,
    /// The output columns of each model, in order.
    columns: BTreeMap<String, Vec<String>>,
}

/// One upstream column reached from a column, with the path's nature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reached {
    /// The column reached.
    pub column: ColumnRef,
    /// Steps from the start (1: a direct origin or dependant).
    pub depth: usize,
    /// Every step on the way is a copy.
    pub copy: bool,
}

impl ColumnGraph {
    /// Builds the graph from each model's lineage.
    pub fn new(models: &BTreeMap<String, ModelLineage>) -> Self {
        let mut g = ColumnGraph::default();
        for (model, lineage) in models {
            g.columns.insert(
                model.clone(),
                lineage.iter().map(|(c, _)| c.clone()).collect(),
            );
            for (column, edges) in lineage {
                g.edges.insert(
                    ColumnRef {
                        table: model.clone(),
                        column: column.clone(),
                    },
                    edges.clone(),
                );
            }
        }
        g
    }

    /// The output columns of a model whose lineage is known.
    pub fn columns_of(&self, table: &str) -> Option<&[String]> {
        self.columns.get(table).map(Vec::as_slice)
    }

    /// The direct origins of a column (empty for a source's column).
    pub fn origins(&self, c: &ColumnRef) -> &[Edge] {
        self.edges.get(c).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every column `c` derives from, through every layer, depth first.
    pub fn upstream(&self, c: &ColumnRef) -> Vec<Reached> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        self.up(c, 1, true, &mut out, &mut seen);
        out
    }

    fn up(
        &self,
        c: &ColumnRef,
        depth: usize,
        copy: bool,
        out: &mut Vec<Reached>,
        seen: &mut BTreeSet<ColumnRef>,
    ) {
        for e in self.origins(c) {
            out.push(Reached {
                column: e.from.clone(),
                depth,
                copy: copy && e.copy,
            });
            if seen.insert(e.from.clone()) {
                self.up(&e.from, depth + 1, copy && e.copy, out, seen);
            }
        }
    }

    /// Every column that derives from `c`, through every layer.
    pub fn downstream(&self, c: &ColumnRef) -> Vec<Reached> {
        let mut reverse: BTreeMap<&ColumnRef, Vec<(&ColumnRef, bool)>> = BTreeMap::new();
        for (to, edges) in &self.edges {
            for e in edges {
                reverse.entry(&e.from).or_default().push((to, e.copy));
            }
        }
        let mut out = Vec::new();
        let mut seen: BTreeSet<ColumnRef> = BTreeSet::new();
        let mut stack: Vec<(&ColumnRef, usize, bool)> = vec![(c, 0, true)];
        while let Some((at, depth, copy)) = stack.pop() {
            if let Some(next) = reverse.get(at) {
                for (to, c2) in next.iter().rev() {
                    if seen.insert((*to).clone()) {
                        out.push(Reached {
                            column: (*to).clone(),
                            depth: depth + 1,
                            copy: copy && *c2,
                        });
                        stack.push((to, depth + 1, copy && *c2));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
