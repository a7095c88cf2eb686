//! `strata plan`: the project on disk against what was last deployed.
//!
//! Pure logic over the DAG, each table's definition fingerprint and planned
//! columns now, and the records of the last successful build of each table.
//! Every table is added, removed, changed directly, affected through an
//! upstream change, or unchanged; column changes are classified as breaking
//! (removed, renamed, narrowed or retyped; a broken contract) or not.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use sha2::{Digest, Sha256};
use strata_project::{Materialization, Model, Project, Source};

use crate::{Graph, NodeKind, interval};

/// One column of a table's output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Column {
    /// Name.
    pub name: String,
    /// Arrow type as DataFusion prints it.
    pub ty: String,
    /// Whether nulls may occur.
    pub nullable: bool,
}

/// A table as the project on disk defines it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    /// Definition fingerprint ([`fingerprint`]).
    pub fingerprint: String,
    /// `ingest` for a source, else the materialization.
    pub materialized: String,
    /// The planned output columns, when they could be planned.
    pub columns: Option<Vec<Column>>,
    /// Ways the output breaks the model's column contract.
    pub contract_errors: Vec<String>,
    /// Whether it is a partitioned (`replace_range`) model.
    pub partitioned: bool,
}

/// A table as last deployed (from the state store).
#[derive(Debug, Clone, PartialEq)]
pub struct Deployed {
    /// `silver.orders`.
    pub name: String,
    /// Definition fingerprint.
    pub fingerprint: String,
    /// `ingest` or the materialization.
    pub materialized: String,
    /// Its columns then.
    pub columns: Vec<Column>,
}

/// What happens to a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// New: never deployed.
    Added,
    /// Its own definition changed.
    Changed,
    /// Unchanged itself, but something upstream changed.
    Affected,
    /// Deployed, no longer in the project.
    Removed,
    /// Nothing changed.
    Unchanged,
}

impl Change {
    /// The word printed for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Changed => "changed",
            Change::Affected => "affected",
            Change::Removed => "removed",
            Change::Unchanged => "unchanged",
        }
    }
}

/// How one column changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum ColumnChange {
    /// A new column.
    Added {
        /// Name.
        column: String,
        /// Type.
        ty: String,
    },
    /// A column that is gone.
    Removed {
        /// Name.
        column: String,
        /// Type it had.
        ty: String,
    },
    /// A column gone and another of the same type in its place.
    Renamed {
        /// Old name.
        from: String,
        /// New name.
        to: String,
        /// Type.
        ty: String,
    },
    /// The type changed.
    Retyped {
        /// Name.
        column: String,
        /// Old type.
        from: String,
        /// New type.
        to: String,
        /// Every old value fits the new type.
        widened: bool,
    },
    /// Nulls may now occur, or no longer.
    Nullability {
        /// Name.
        column: String,
        /// Whether nulls may occur now.
        nullable: bool,
    },
}

impl ColumnChange {
    /// Whether readers of the table can break.
    pub fn breaking(&self) -> bool {
        match self {
            ColumnChange::Added { .. } | ColumnChange::Nullability { .. } => false,
            ColumnChange::Removed { .. } | ColumnChange::Renamed { .. } => true,
            ColumnChange::Retyped { widened, .. } => !widened,
        }
    }
}

/// What a run would do with a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Build it for the first time.
    Build,
    /// Rebuild it as a whole.
    Rebuild,
    /// Its stored rows were made by the old definition: rebuild from scratch.
    FullRefresh,
    /// It runs as usual on new data; rows already stored stay as they are.
    Incremental,
    /// Nothing to do.
    Keep,
    /// Not built any more; its table stays in the lake.
    Orphan,
}

impl Action {
    /// The words printed for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Build => "build",
            Action::Rebuild => "rebuild",
            Action::FullRefresh => "full refresh",
            Action::Incremental => {
                "new rows only (stored rows kept; --full-refresh recomputes them)"
            }
            Action::Keep => "keep",
            Action::Orphan => "no longer built (its table stays in the lake)",
        }
    }
}

/// The intervals a partitioned model would have to rebuild.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Backfill {
    /// How many intervals.
    pub intervals: usize,
    /// The first one's start (RFC 3339).
    pub first: String,
    /// The last one's start (RFC 3339).
    pub last: String,
}

/// The plan for one table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TablePlan {
    /// `silver.orders`.
    pub name: String,
    /// What happened to it.
    pub change: Change,
    /// `ingest` or the materialization (the deployed one when removed).
    pub materialized: String,
    /// Why it is changed or affected (`SQL changed`, `upstream silver.a changed`).
    pub reasons: Vec<String>,
    /// Column by column, against the deployed columns.
    pub columns: Vec<ColumnChange>,
    /// Why it breaks readers (empty: it does not).
    pub breaking: Vec<String>,
    /// What a run would do.
    pub action: Action,
    /// For a partitioned model that must be rebuilt: its recorded intervals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backfill: Option<Backfill>,
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Plan {
    /// Every table, in DAG order, removed ones last.
    pub tables: Vec<TablePlan>,
    /// Whether anything was ever deployed.
    pub deployed_before: bool,
}

impl Plan {
    /// Whether any change breaks readers.
    pub fn breaking(&self) -> bool {
        self.tables.iter().any(|t| !t.breaking.is_empty())
    }

    /// How many tables have `change`.
    pub fn count(&self, change: Change) -> usize {
        self.tables.iter().filter(|t| t.change == change).count()
    }

    /// The plan as people read it.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if !self.deployed_before {
            s.push_str("Nothing has been deployed yet: every table will be built.\n\n");
        }
        let width = self
            .tables
            .iter()
            .filter(|t| t.change != Change::Unchanged)
            .map(|t| t.name.len())
            .max()
            .unwrap_or(0);
        for t in self.tables.iter().filter(|t| t.change != Change::Unchanged) {
            let sign = match t.change {
                Change::Added => '+',
                Change::Changed => '~',
                Change::Affected => '>',
                Change::Removed => '-',
                Change::Unchanged => '=',
            };
            let _ = write!(
                s,
                "{sign} {:<width$}  {:<9} {:<12} {}",
                t.name,
                t.change.as_str(),
                t.materialized,
                t.action.as_str()
            );
            if !t.breaking.is_empty() {
                s.push_str("  BREAKING");
            }
            s.push('\n');
            for r in &t.reasons {
                let _ = writeln!(s, "      {r}");
            }
            for c in &t.columns {
                let mark = if c.breaking() { "  BREAKING" } else { "" };
                let line = match c {
                    ColumnChange::Added { column, ty } => format!("+ column {column} {ty}"),
                    ColumnChange::Removed { column, ty } => format!("- column {column} {ty}"),
                    ColumnChange::Renamed { from, to, ty } => {
                        format!("~ column {from} renamed to {to} ({ty})")
                    }
                    ColumnChange::Retyped {
                        column,
                        from,
                        to,
                        widened,
                    } => format!(
                        "~ column {column} {from} -> {to} ({})",
                        if *widened {
                            "widened"
                        } else {
                            "narrowed or retyped"
                        }
                    ),
                    ColumnChange::Nullability { column, nullable } => format!(
                        "~ column {column} {}",
                        if *nullable {
                            "may now be null"
                        } else {
                            "is now never null"
                        }
                    ),
                };
                let _ = writeln!(s, "      {line}{mark}");
            }
            for b in t.breaking.iter().filter(|b| b.starts_with("contract")) {
                let _ = writeln!(s, "      {b}  BREAKING");
            }
            if let Some(b) = &t.backfill {
                let _ = writeln!(
                    s,
                    "      backfill {} interval{} from {} to {}",
                    b.intervals,
                    if b.intervals == 1 { "" } else { "s" },
                    b.first,
                    b.last
                );
            }
        }
        let breaking = self
            .tables
            .iter()
            .filter(|t| !t.breaking.is_empty())
            .count();
        let rebuild = self
            .tables
            .iter()
            .filter(|t| {
                matches!(
                    t.action,
                    Action::Build | Action::Rebuild | Action::FullRefresh | Action::Incremental
                )
            })
            .count();
        let _ = writeln!(
            s,
            "{}{} added, {} changed, {} affected, {} removed, {} unchanged; {} to build, {} kept; {}",
            if self.tables.iter().any(|t| t.change != Change::Unchanged) {
                "\n"
            } else {
                ""
            },
            self.count(Change::Added),
            self.count(Change::Changed),
            self.count(Change::Affected),
            self.count(Change::Removed),
            self.count(Change::Unchanged),
            rebuild,
            self.count(Change::Unchanged),
            match breaking {
                0 => "no breaking change".to_string(),
                1 => "1 table with a breaking change".to_string(),
                n => format!("{n} tables with breaking changes"),
            }
        );
        s
    }
}

/// Fingerprint of everything in a model's definition that changes its
/// output: the SQL as parsed (so layout and comments do not count) and the
/// materialization settings.
pub fn model_fingerprint(model: &Model) -> String {
    let sql = normalized_sql(&model.sql);
    let c = &model.config;
    let partitioning = c
        .partitioning
        .as_ref()
        .map(|p| format!("{}/{:?}", p.column, p.grain));
    hash(&format!(
        "model|{sql}|{}|{:?}|{:?}|{:?}|{:?}",
        c.materialized.as_str(),
        c.strategy,
        c.unique_key,
        c.lookups,
        partitioning
    ))
}

/// Fingerprint of a source's definition: what it reads and how it decodes it
/// (never its credentials: a database source contributes only its relation).
pub fn source_fingerprint(s: &Source) -> String {
    let relation = s.database.as_ref().map(|d| format!("{:?}", d.relation));
    let http = s
        .http
        .as_ref()
        .map(|h| format!("{:?}|{:?}", h.records, h.pagination));
    hash(&format!(
        "source|{:?}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{relation:?}|{http:?}",
        s.format,
        s.path_as_written,
        s.mode,
        s.on_bad_rows,
        s.columns,
        s.csv,
        s.null_values,
        s.schema_drift,
        s.time
    ))
}

/// The fingerprint of the table `name` as the project defines it.
pub fn fingerprint(project: &Project, graph: &Graph, name: &str) -> Option<String> {
    match &graph.node(name)?.kind {
        NodeKind::Source(s) => project.sources.get(s).map(source_fingerprint),
        NodeKind::Model => project.models.get(name).map(model_fingerprint),
    }
}

fn hash(text: &str) -> String {
    let mut h = Sha256::new();
    h.update(text.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// A query as sqlparser prints it back: the same for any layout or comments.
pub fn normalized_sql(sql: &str) -> String {
    let bound = interval::bind_interval(sql, "1     ", "1   ");
    match sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::GenericDialect {}, &bound) {
        Ok(statements) => statements
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(";\n"),
        Err(_) => sql.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// Compares `current` (every table of the graph, by name) with `deployed`.
pub fn diff(graph: &Graph, current: &BTreeMap<String, Current>, deployed: &[Deployed]) -> Plan {
    let deployed_by: BTreeMap<&str, &Deployed> =
        deployed.iter().map(|d| (d.name.as_str(), d)).collect();
    let mut tables: Vec<TablePlan> = Vec::new();
    let mut moved: BTreeSet<String> = BTreeSet::new(); // added, changed or affected
    for name in graph.order() {
        let Some(cur) = current.get(name) else {
            continue;
        };
        let node = graph.node(name);
        let mut plan = TablePlan {
            name: name.clone(),
            change: Change::Unchanged,
            materialized: cur.materialized.clone(),
            reasons: vec![],
            columns: vec![],
            breaking: vec![],
            action: Action::Keep,
            backfill: None,
        };
        match deployed_by.get(name.as_str()) {
            None => {
                plan.change = Change::Added;
                plan.action = Action::Build;
            }
            Some(d) => {
                if d.fingerprint != cur.fingerprint {
                    plan.change = Change::Changed;
                    if d.materialized != cur.materialized {
                        plan.reasons.push(format!(
                            "materialization {} -> {}",
                            d.materialized, cur.materialized
                        ));
                    } else if cur.materialized == "ingest" {
                        plan.reasons.push("source definition changed".into());
                    } else {
                        plan.reasons
                            .push("definition changed (SQL or config)".into());
                    }
                }
                if let Some(cols) = &cur.columns {
                    plan.columns = column_changes(&d.columns, cols);
                    if !plan.columns.is_empty() && plan.change == Change::Unchanged {
                        plan.change = Change::Changed;
                        plan.reasons.push("output columns changed".into());
                    }
                }
                let upstream_moved: Vec<&String> = node
                    .map(|n| n.upstream.iter().filter(|u| moved.contains(*u)).collect())
                    .unwrap_or_default();
                if plan.change == Change::Unchanged && !upstream_moved.is_empty() {
                    plan.change = Change::Affected;
                }
                if plan.change == Change::Affected {
                    for u in upstream_moved {
                        plan.reasons.push(format!("upstream {u} changes"));
                    }
                }
                plan.action = match plan.change {
                    Change::Unchanged => Action::Keep,
                    Change::Changed if keeps_history(cur) && cur.materialized != "ingest" => {
                        Action::FullRefresh
                    }
                    Change::Changed if cur.materialized == "ingest" => Action::Incremental,
                    Change::Affected if keeps_history(cur) => Action::Incremental,
                    _ => Action::Rebuild,
                };
            }
        }
        for c in plan.columns.iter().filter(|c| c.breaking()) {
            plan.breaking.push(match c {
                ColumnChange::Removed { column, .. } => format!("column {column} removed"),
                ColumnChange::Renamed { from, to, .. } => format!("column {from} renamed to {to}"),
                ColumnChange::Retyped {
                    column, from, to, ..
                } => format!("column {column} changed type {from} -> {to}"),
                ColumnChange::Added { .. } | ColumnChange::Nullability { .. } => continue,
            });
        }
        plan.breaking.extend(cur.contract_errors.iter().cloned());
        if plan.change != Change::Unchanged {
            moved.insert(name.clone());
        }
        tables.push(plan);
    }
    for d in deployed {
        if graph.node(&d.name).is_none() {
            tables.push(TablePlan {
                name: d.name.clone(),
                change: Change::Removed,
                materialized: d.materialized.clone(),
                reasons: vec![],
                columns: vec![],
                breaking: vec!["table removed from the project".into()],
                action: Action::Orphan,
                backfill: None,
            });
        }
    }
    Plan {
        tables,
        deployed_before: !deployed.is_empty(),
    }
}

/// Whether the table keeps rows from earlier runs (so a new definition means
/// recomputing them).
fn keeps_history(cur: &Current) -> bool {
    cur.partitioned
        || cur.materialized == Materialization::Incremental.as_str()
        || cur.materialized == Materialization::Scd2.as_str()
        || cur.materialized == "ingest"
}

/// Column-by-column differences, in the new column order, removed ones last.
pub fn column_changes(old: &[Column], new: &[Column]) -> Vec<ColumnChange> {
    let mut out = Vec::new();
    let old_names: BTreeSet<&str> = old.iter().map(|c| c.name.as_str()).collect();
    let new_names: BTreeSet<&str> = new.iter().map(|c| c.name.as_str()).collect();
    // A removed column whose position a new column of the same type takes: renamed.
    let mut renamed: BTreeMap<&str, &str> = BTreeMap::new(); // new -> old
    for (i, o) in old.iter().enumerate() {
        if new_names.contains(o.name.as_str()) {
            continue;
        }
        if let Some(n) = new.get(i)
            && !old_names.contains(n.name.as_str())
            && n.ty == o.ty
        {
            renamed.insert(n.name.as_str(), o.name.as_str());
        }
    }
    for n in new {
        if let Some(from) = renamed.get(n.name.as_str()) {
            out.push(ColumnChange::Renamed {
                from: from.to_string(),
                to: n.name.clone(),
                ty: n.ty.clone(),
            });
            continue;
        }
        match old.iter().find(|o| o.name == n.name) {
            None => out.push(ColumnChange::Added {
                column: n.name.clone(),
                ty: n.ty.clone(),
            }),
            Some(o) => {
                if !same_type(&o.ty, &n.ty) {
                    out.push(ColumnChange::Retyped {
                        column: n.name.clone(),
                        from: o.ty.clone(),
                        to: n.ty.clone(),
                        widened: widens(&o.ty, &n.ty),
                    });
                } else if o.nullable != n.nullable {
                    out.push(ColumnChange::Nullability {
                        column: n.name.clone(),
                        nullable: n.nullable,
                    });
                }
            }
        }
    }
    let renamed_from: BTreeSet<&str> = renamed.values().copied().collect();
    for o in old {
        if !new_names.contains(o.name.as_str()) && !renamed_from.contains(o.name.as_str()) {
            out.push(ColumnChange::Removed {
                column: o.name.clone(),
                ty: o.ty.clone(),
            });
        }
    }
    out
}

/// Types that hold the same values (string encodings differ only in layout).
fn same_type(a: &str, b: &str) -> bool {
    let strings = ["Utf8", "LargeUtf8", "Utf8View"];
    a == b || (strings.contains(&a) && strings.contains(&b))
}

/// Whether every value of type `from` fits `to` unchanged.
pub fn widens(from: &str, to: &str) -> bool {
    const SIGNED: [&str; 4] = ["Int8", "Int16", "Int32", "Int64"];
    const UNSIGNED: [&str; 4] = ["UInt8", "UInt16", "UInt32", "UInt64"];
    let rank = |list: &[&str], t: &str| list.iter().position(|x| *x == t);
    if let (Some(a), Some(b)) = (rank(&SIGNED, from), rank(&SIGNED, to)) {
        return b > a;
    }
    if let (Some(a), Some(b)) = (rank(&UNSIGNED, from), rank(&UNSIGNED, to)) {
        return b > a;
    }
    // An unsigned integer fits a wider signed one.
    if let (Some(a), Some(b)) = (rank(&UNSIGNED, from), rank(&SIGNED, to)) {
        return b > a;
    }
    if from == "Float32" && to == "Float64" {
        return true;
    }
    if [
        "Int8", "Int16", "Int32", "UInt8", "UInt16", "UInt32", "Float32",
    ]
    .contains(&from)
        && to == "Float64"
    {
        return true;
    }
    if from == "Date32" && to.starts_with("Timestamp(") {
        return false; // a date read as midnight is a different value to readers
    }
    if let (Some((p1, s1)), Some((p2, s2))) = (decimal(from), decimal(to)) {
        return s2 >= s1 && p2 - s2 >= p1 - s1;
    }
    if let (Some(a), Some(b)) = (rank(&SIGNED, from), decimal(to)) {
        let digits = [3, 5, 10, 19][a];
        return b.0 - b.1 >= digits;
    }
    false
}

/// `Decimal128(15, 2)` → (15, 2).
fn decimal(t: &str) -> Option<(i64, i64)> {
    let inner = t
        .strip_prefix("Decimal128(")
        .or_else(|| t.strip_prefix("Decimal256("))?
        .strip_suffix(')')?;
    let (p, s) = inner.split_once(',')?;
    Some((p.trim().parse().ok()?, s.trim().parse().ok()?))
}

#[cfg(test)]
mod tests;
