//! The DAG of a project: which table reads which, read from each model's SQL;
//! topological order, located errors for unknown tables and cycles (with the
//! whole path), and selection expressions (`+gold.x`, `layer:silver`, …).
//!
//! Depends on `strata-project` only; it parses SQL with `sqlparser` (the
//! version DataFusion uses) and never plans or runs it.
//!
//! ```no_run
//! # let project: strata_project::Project = todo!();
//! let graph = strata_graph::Graph::build(&project)?;
//! let selected = graph.select("+gold.daily_revenue")?;
//! for name in graph.order() { if selected.contains(name) { println!("{name}"); } }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod interval;
pub mod plan;
pub mod refs;
pub mod select;

use std::collections::{BTreeMap, BTreeSet};

use strata_project::error::did_you_mean;
use strata_project::{Errors, Layer, LocatedError, Project};

pub use refs::{SqlError, TableRef, table_references};

/// What a node of the DAG is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A source ingested into `bronze.<name>`.
    Source(String),
    /// A SQL model.
    Model,
}

/// One node: a table that a task writes.
#[derive(Debug, Clone)]
pub struct Node {
    /// Qualified table name.
    pub name: String,
    /// Source or model.
    pub kind: NodeKind,
    /// Its layer.
    pub layer: Layer,
    /// Tags (models only).
    pub tags: Vec<String>,
    /// The nodes it depends on (qualified names), in the order first written.
    pub upstream: Vec<String>,
    /// The tables its SQL reads, as written (a source's quarantine table is
    /// read from the source's node), in the order first written.
    pub tables: Vec<String>,
    /// Tables only its checks read (relationships targets, `checks/*.sql`).
    pub check_tables: Vec<String>,
    /// The nodes that read it.
    pub downstream: Vec<String>,
    /// Indexes into `Project::sql_checks` of the `checks/*.sql` files that gate
    /// this model's publish (each file gates the last model it reads).
    pub sql_checks: Vec<usize>,
}

/// The project's DAG.
#[derive(Debug, Clone)]
pub struct Graph {
    nodes: BTreeMap<String, Node>,
    order: Vec<String>,
}

impl Graph {
    /// Builds the DAG, reporting every unknown table, bad SQL and cycle found.
    pub fn build(project: &Project) -> Result<Graph, Errors> {
        let mut errors = Errors::default();
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        // table name -> node that writes it (quarantine tables belong to their source)
        let mut writers: BTreeMap<String, String> = BTreeMap::new();
        for s in project.sources.values() {
            nodes.insert(
                s.table(),
                Node {
                    name: s.table(),
                    kind: NodeKind::Source(s.name.clone()),
                    layer: Layer::Bronze,
                    tags: vec![],
                    upstream: vec![],
                    tables: vec![],
                    check_tables: vec![],
                    downstream: vec![],
                    sql_checks: vec![],
                },
            );
            writers.insert(s.table(), s.table());
            writers.insert(s.quarantine_table(), s.table());
        }
        for m in project.models.values() {
            writers.insert(m.name.clone(), m.name.clone());
        }
        for m in project.models.values() {
            // Rows a per-row expectation quarantines land beside the model.
            writers
                .entry(format!("{}_quarantine", m.name))
                .or_insert_with(|| m.name.clone());
        }
        let known: Vec<String> = writers.keys().cloned().collect();
        // where each model references each upstream (for cycle messages)
        let mut ref_places: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
        for m in project.models.values() {
            let mut upstream = Vec::new();
            let mut tables: Vec<String> = Vec::new();
            let mut check_tables: Vec<String> = Vec::new();
            if m.config.materialized == strata_project::Materialization::View
                && interval::uses_interval(&m.sql)
            {
                errors.push(
                    LocatedError::file(&m.path, "a view cannot read :start or :end")
                        .with_help("views are computed when read, outside any run; make it a table or incremental model"),
                );
            }
            // `:start`/`:end` become same-width literals so positions stay right.
            let sql = interval::bind_interval(&m.sql, "1     ", "1   ");
            match table_references(&sql) {
                Err(e) => {
                    let err = if e.line == 0 {
                        // No position (e.g. the query ends too early): point at its end.
                        let end = m.sql.trim_end().len();
                        LocatedError::at(
                            &m.path,
                            &m.sql,
                            end,
                            0,
                            format!("SQL error: {}", e.message),
                        )
                    } else {
                        LocatedError::at_line_col(
                            &m.path,
                            &m.sql,
                            e.line,
                            e.column,
                            format!("SQL error: {}", e.message),
                        )
                    };
                    errors.push(err.with_help("fix the query; each model is one SELECT"));
                }
                Ok(refs) => {
                    for r in refs {
                        let resolved = resolve(&r.name, &writers);
                        match resolved {
                            Ok(writer) => {
                                if writer == m.name {
                                    errors.push(
                                        LocatedError::at_line_col(
                                            &m.path,
                                            &m.sql,
                                            r.line,
                                            r.column,
                                            format!("{} reads itself", m.name),
                                        )
                                        .with_help("a model cannot select from its own table"),
                                    );
                                    continue;
                                }
                                ref_places
                                    .insert((m.name.clone(), writer.clone()), (r.line, r.column));
                                if !upstream.contains(&writer) {
                                    upstream.push(writer);
                                }
                                if !tables.contains(&r.name) {
                                    tables.push(r.name.clone());
                                }
                            }
                            Err(msg) => {
                                let hint = match did_you_mean(&r.name, known.iter().map(String::as_str)) {
                                    Some(k) => format!("did you mean `{k}`?"),
                                    None => "tables are named layer.name: a source `orders` is bronze.orders, models/silver/x.sql is silver.x".into(),
                                };
                                errors.push(
                                    LocatedError::at_line_col(
                                        &m.path, &m.sql, r.line, r.column, msg,
                                    )
                                    .with_help(hint),
                                );
                            }
                        }
                    }
                }
            }
            for c in &m.config.checks {
                for t in c.tables() {
                    match resolve(&t, &writers) {
                        Ok(w) if w != m.name => {
                            if !upstream.contains(&w) {
                                upstream.push(w);
                            }
                            if !check_tables.contains(&t) {
                                check_tables.push(t);
                            }
                        }
                        Ok(_) => {}
                        Err(msg) => errors.push(
                            LocatedError::at(
                                &m.path,
                                &m.sql,
                                find_in_header(&m.sql, &t),
                                t.len(),
                                format!("check `{}`: {msg}", c.name),
                            )
                            .with_help(
                                "a relationships check refers to another table as layer.name",
                            ),
                        ),
                    }
                }
            }
            for l in &m.config.lookups {
                if !tables.contains(l) {
                    let place = find_in_header(&m.sql, l);
                    errors.push(
                        LocatedError::at(
                            &m.path,
                            &m.sql,
                            place,
                            l.len(),
                            format!("lookup `{l}` is not read by the query"),
                        )
                        .with_help("list only tables the SQL selects from"),
                    );
                }
            }
            nodes.insert(
                m.name.clone(),
                Node {
                    name: m.name.clone(),
                    kind: NodeKind::Model,
                    layer: m.layer,
                    tags: m.config.tags.clone(),
                    upstream,
                    tables,
                    check_tables,
                    downstream: vec![],
                    sql_checks: vec![],
                },
            );
        }
        let edges: Vec<(String, String)> = nodes
            .values()
            .flat_map(|n| n.upstream.iter().map(move |u| (u.clone(), n.name.clone())))
            .collect();
        for (u, d) in edges {
            if let Some(n) = nodes.get_mut(&u) {
                n.downstream.push(d);
            }
        }
        let mut graph = Graph {
            nodes,
            order: vec![],
        };
        match graph.topo_order() {
            Ok(order) => {
                graph.order = order;
                graph.attach_sql_checks(project, &writers, &mut errors);
            }
            Err(cycle) => {
                let first = &cycle[0];
                let second = &cycle[1];
                let path = cycle.join(" -> ");
                // cycle[i+1] reads cycle[i]; report at the reference in the second model
                let err = match (
                    project.models.get(second),
                    ref_places.get(&(second.clone(), first.clone())),
                ) {
                    (Some(m), Some((line, col))) => LocatedError::at_line_col(
                        &m.path,
                        &m.sql,
                        *line,
                        *col,
                        format!("cycle: {path}"),
                    ),
                    (Some(m), None) => LocatedError::file(&m.path, format!("cycle: {path}")),
                    _ => LocatedError::file("models", format!("cycle: {path}")),
                };
                errors.push(
                    err.with_help("break the cycle: a model cannot depend on its own downstream"),
                );
            }
        }
        errors.into_result(graph)
    }

    /// Gives each `checks/*.sql` file to the last model (in run order) it reads;
    /// the other tables it reads become that model's dependencies.
    fn attach_sql_checks(
        &mut self,
        project: &Project,
        writers: &BTreeMap<String, String>,
        errors: &mut Errors,
    ) {
        let pos: BTreeMap<String, usize> = self
            .order
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        for (i, c) in project.sql_checks.iter().enumerate() {
            let refs = match table_references(&c.sql) {
                Ok(r) => r,
                Err(e) => {
                    errors.push(LocatedError::at_line_col(
                        &c.path,
                        &c.sql,
                        e.line,
                        e.column,
                        format!("SQL error: {}", e.message),
                    ));
                    continue;
                }
            };
            let mut read: Vec<(String, String)> = vec![]; // (table, writer)
            for r in refs {
                match resolve(&r.name, writers) {
                    Ok(w) => read.push((r.name.clone(), w)),
                    Err(msg) => errors.push(LocatedError::at_line_col(
                        &c.path, &c.sql, r.line, r.column, msg,
                    )),
                }
            }
            let target = read
                .iter()
                .filter(|(_, w)| project.models.contains_key(w))
                .max_by_key(|(_, w)| pos.get(w).copied().unwrap_or(0))
                .map(|(_, w)| w.clone());
            let Some(target) = target else {
                errors.push(
                    LocatedError::file(&c.path, "this check reads no model")
                        .with_help("a checks/*.sql file gates the publish of the models it reads; source checks are not supported yet"),
                );
                continue;
            };
            for (table, w) in &read {
                if *w == target {
                    continue;
                }
                if let Some(n) = self.nodes.get_mut(&target) {
                    if !n.upstream.contains(w) {
                        n.upstream.push(w.clone());
                    }
                    if !n.check_tables.contains(table) {
                        n.check_tables.push(table.clone());
                    }
                }
                if let Some(u) = self.nodes.get_mut(w)
                    && !u.downstream.contains(&target)
                {
                    u.downstream.push(target.clone());
                }
            }
            if let Some(n) = self.nodes.get_mut(&target) {
                n.sql_checks.push(i);
            }
        }
    }

    /// Every node in an order where each comes after all it reads.
    pub fn order(&self) -> &[String] {
        &self.order
    }

    /// A node by qualified name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// All nodes, by name.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// The node and everything upstream of it.
    pub fn upstream_closure(&self, name: &str) -> BTreeSet<String> {
        self.closure(name, |n| &n.upstream)
    }

    /// The node and everything downstream of it.
    pub fn downstream_closure(&self, name: &str) -> BTreeSet<String> {
        self.closure(name, |n| &n.downstream)
    }

    fn closure(&self, name: &str, next: impl Fn(&Node) -> &Vec<String>) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![name.to_string()];
        while let Some(n) = stack.pop() {
            if seen.insert(n.clone())
                && let Some(node) = self.nodes.get(&n)
            {
                stack.extend(next(node).iter().cloned());
            }
        }
        seen
    }

    /// Kahn's algorithm; on a cycle returns its path, first node repeated at the end.
    fn topo_order(&self) -> Result<Vec<String>, Vec<String>> {
        let mut indeg: BTreeMap<&str, usize> = self
            .nodes
            .values()
            .map(|n| (n.name.as_str(), n.upstream.len()))
            .collect();
        let mut ready: BTreeSet<&str> = indeg
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(n, _)| *n)
            .collect();
        let mut order = Vec::with_capacity(self.nodes.len());
        while let Some(n) = ready.pop_first() {
            order.push(n.to_string());
            for d in &self.nodes[n].downstream {
                if let Some(deg) = indeg.get_mut(d.as_str()) {
                    *deg -= 1;
                    if *deg == 0 {
                        ready.insert(d.as_str());
                    }
                }
            }
        }
        if order.len() == self.nodes.len() {
            return Ok(order);
        }
        // Walk upstream edges among the remaining nodes until one repeats.
        let done: BTreeSet<&str> = order.iter().map(String::as_str).collect();
        let start = self
            .nodes
            .keys()
            .find(|k| !done.contains(k.as_str()))
            .cloned()
            .unwrap_or_default();
        let mut path = vec![start.clone()];
        let mut cur = start;
        loop {
            let next = self.nodes[&cur]
                .upstream
                .iter()
                .find(|u| !done.contains(u.as_str()))
                .cloned();
            let Some(next) = next else { break };
            if let Some(pos) = path.iter().position(|p| *p == next) {
                let mut cycle: Vec<String> = path[pos..].to_vec();
                cycle.reverse(); // upstream first: a -> b means b reads a
                cycle.push(cycle[0].clone());
                return Err(cycle);
            }
            path.push(next.clone());
            cur = next;
        }
        Err(path)
    }
}

fn resolve(name: &str, writers: &BTreeMap<String, String>) -> Result<String, String> {
    if let Some(w) = writers.get(name) {
        return Ok(w.clone());
    }
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        [layer, _] if Layer::parse(layer).is_some() => Err(format!("unknown table `{name}`")),
        [_, _] => Err(format!(
            "unknown table `{name}`: `{}` is not a layer (bronze, silver, gold)",
            parts[0]
        )),
        [_] => Err(format!("unqualified table `{name}`")),
        _ => Err(format!("unknown table `{name}`")),
    }
}

fn find_in_header(text: &str, needle: &str) -> usize {
    text.find(&format!("\"{needle}\""))
        .map(|i| i + 1)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
