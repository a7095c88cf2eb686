//! `strata lineage`: table lineage from the DAG, and with `--columns` (or a
//! column named) column lineage through every layer, upstream or downstream.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use strata_engine::lineage::{ColumnGraph, ColumnRef};
use strata_graph::Graph;
use strata_project::Project;

/// What to show.
pub(crate) struct Request<'a> {
    /// `gold.x` or `gold.x.column`.
    pub target: &'a str,
    /// Column lineage for every column of a table.
    pub columns: bool,
    /// Dependants instead of origins.
    pub downstream: bool,
    /// JSON instead of text.
    pub json: bool,
}

/// Renders the answer to `req`, or says what is wrong with it.
pub(crate) async fn render(
    project: &Project,
    graph: &Graph,
    req: &Request<'_>,
) -> Result<String, String> {
    let (table, column) = if graph.node(req.target).is_some() {
        (req.target.to_string(), None)
    } else {
        match req.target.rsplit_once('.') {
            Some((t, c)) if graph.node(t).is_some() => (t.to_string(), Some(c.to_string())),
            _ => {
                let names: Vec<&str> = graph.order().iter().map(String::as_str).collect();
                let hint = strata_project::error::did_you_mean(req.target, names)
                    .map(|n| format!("; did you mean `{n}`?"))
                    .unwrap_or_default();
                return Err(format!(
                    "`{}` is neither a table nor a table's column{hint}",
                    req.target
                ));
            }
        }
    };
    if column.is_none() && !req.columns {
        return Ok(table_lineage(graph, &table, req.json));
    }
    let check = strata_engine::validate::check_plans(project, graph).await;
    let cg = ColumnGraph::new(&check.lineage);
    let all_columns: Vec<String> = match cg.columns_of(&table) {
        Some(cols) => cols.to_vec(),
        None => check
            .schemas
            .get(&table)
            .map(|s| s.fields().iter().map(|f| f.name().clone()).collect())
            .unwrap_or_default(),
    };
    let columns: Vec<String> = match &column {
        Some(c) => {
            if !all_columns.contains(c) {
                return Err(format!(
                    "{table} has no column `{c}`{}",
                    if all_columns.is_empty() {
                        " (its columns are unknown until it is ingested)".to_string()
                    } else {
                        format!("; its columns: {}", all_columns.join(", "))
                    }
                ));
            }
            vec![c.clone()]
        }
        None => all_columns,
    };
    if req.json {
        let items: Vec<serde_json::Value> = columns
            .iter()
            .map(|c| {
                let at = ColumnRef {
                    table: table.clone(),
                    column: c.clone(),
                };
                let reached = if req.downstream {
                    cg.downstream(&at)
                } else {
                    cg.upstream(&at)
                };
                serde_json::json!({
                    "column": c,
                    if req.downstream { "downstream" } else { "upstream" }: reached,
                })
            })
            .collect();
        return Ok(serde_json::to_string_pretty(
            &serde_json::json!({ "table": table, "columns": items }),
        )
        .unwrap_or_default());
    }
    let mut s = String::new();
    for c in &columns {
        let at = ColumnRef {
            table: table.clone(),
            column: c.clone(),
        };
        let _ = writeln!(s, "{at}");
        if req.downstream {
            let mut reached = cg.downstream(&at);
            reached.sort_by(|a, b| a.depth.cmp(&b.depth).then(a.column.cmp(&b.column)));
            if reached.is_empty() {
                s.push_str("  (nothing reads it)\n");
            }
            for r in reached {
                let _ = writeln!(
                    s,
                    "  {}{}  ({})",
                    "  ".repeat(r.depth - 1),
                    r.column,
                    if r.copy { "copy" } else { "transformation" }
                );
            }
        } else {
            if cg.origins(&at).is_empty() {
                s.push_str(
                    if graph.node(&table).is_some_and(|n| n.upstream.is_empty()) {
                        "  (a source column)\n"
                    } else {
                        "  (computed from no table column)\n"
                    },
                );
            }
            tree(&cg, &at, "  ", &mut BTreeSet::new(), &mut s);
        }
    }
    Ok(s)
}

/// Prints the origins of `at` as a tree.
fn tree(
    cg: &ColumnGraph,
    at: &ColumnRef,
    indent: &str,
    seen: &mut BTreeSet<ColumnRef>,
    s: &mut String,
) {
    let edges = cg.origins(at);
    for (i, e) in edges.iter().enumerate() {
        let last = i + 1 == edges.len();
        let _ = writeln!(
            s,
            "{indent}{}{}  ({})",
            if last { "└─ " } else { "├─ " },
            e.from,
            if e.copy { "copy" } else { "transformation" }
        );
        if seen.insert(e.from.clone()) {
            let next = format!("{indent}{}", if last { "   " } else { "│  " });
            tree(cg, &e.from, &next, seen, s);
        }
    }
}

/// Table-level lineage: everything upstream and downstream of `table`.
fn table_lineage(graph: &Graph, table: &str, json: bool) -> String {
    let up: Vec<&String> = graph
        .order()
        .iter()
        .filter(|n| graph.upstream_closure(table).contains(*n) && n.as_str() != table)
        .collect();
    let down: Vec<&String> = graph
        .order()
        .iter()
        .filter(|n| graph.downstream_closure(table).contains(*n) && n.as_str() != table)
        .collect();
    if json {
        return serde_json::to_string_pretty(
            &serde_json::json!({ "table": table, "upstream": up, "downstream": down }),
        )
        .unwrap_or_default();
    }
    let mut s = String::new();
    let direct = |n: &str| {
        graph
            .node(n)
            .map(|x| x.upstream.clone())
            .unwrap_or_default()
    };
    let _ = writeln!(s, "upstream of {table}:");
    if up.is_empty() {
        s.push_str("  (none)\n");
    }
    for n in &up {
        let _ = writeln!(s, "  {n}  <- {}", list_or_source(&direct(n)));
    }
    let _ = writeln!(s, "{table}  <- {}", list_or_source(&direct(table)));
    let _ = writeln!(s, "downstream of {table}:");
    if down.is_empty() {
        s.push_str("  (none)\n");
    }
    for n in &down {
        let _ = writeln!(s, "  {n}  <- {}", list_or_source(&direct(n)));
    }
    s
}

fn list_or_source(names: &[String]) -> String {
    if names.is_empty() {
        "(source)".to_string()
    } else {
        names.join(", ")
    }
}
