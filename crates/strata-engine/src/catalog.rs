//! The catalog: what a person outside the team needs to understand every
//! table — docs, owner, layer, columns, checks and their last results,
//! freshness, data products and lineage — gathered from the project, the Delta
//! tables and the state store. `strata docs` renders it; the dashboard shows
//! the same content.

use serde::Serialize;
use strata_graph::NodeKind;
use strata_project::{CheckKind, OnFail, Severity};

use crate::engine::Engine;
use crate::error::{Context, Result};
use crate::lake::version_of;

/// Everything the catalog shows.
#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    /// The project's name.
    pub project: String,
    /// When it was gathered (RFC 3339).
    pub generated_at: String,
    /// Every table, upstream first.
    pub tables: Vec<TableDoc>,
    /// Data products.
    pub products: Vec<ProductDoc>,
}

/// One table.
#[derive(Debug, Clone, Serialize)]
pub struct TableDoc {
    /// `silver.orders`.
    pub name: String,
    /// `bronze`, `silver` or `gold`.
    pub layer: String,
    /// `source` or the materialization (`table`, `incremental (merge)`, …).
    pub kind: String,
    /// What it holds.
    pub description: Option<String>,
    /// Who answers for it.
    pub owner: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Where it is defined (a model file or `strata.toml`).
    pub defined_in: String,
    /// The model's SQL (empty for a source).
    pub sql: String,
    /// Columns: from the Delta table when built, else as declared.
    pub columns: Vec<ColumnDoc>,
    /// Tables it reads.
    pub upstream: Vec<String>,
    /// Tables that read it.
    pub downstream: Vec<String>,
    /// Checks and expectations with their latest results.
    pub checks: Vec<CheckDoc>,
    /// The Delta version, when built.
    pub version: Option<i64>,
    /// When it was last built or loaded (RFC 3339).
    pub last_built: Option<String>,
    /// Data products exposing it.
    pub products: Vec<String>,
    /// For a partitioned model: `day on order_date`.
    pub partitioning: Option<String>,
}

/// One column.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnDoc {
    /// Name.
    pub name: String,
    /// Type.
    pub ty: String,
    /// Whether nulls may occur.
    pub nullable: bool,
    /// What it means (from the model's contract).
    pub description: Option<String>,
    /// The upstream columns it derives from, one layer up:
    /// `silver.orders.amount (copy)` or `… (transformation)`.
    pub derived_from: Vec<String>,
}

/// One check and its latest result.
#[derive(Debug, Clone, Serialize)]
pub struct CheckDoc {
    /// The check's name (`not_null(order_id)`).
    pub name: String,
    /// `error`, `warn`, or for a per-row expectation its action.
    pub on_failure: String,
    /// `pass`, `warn` or `fail` at the last check, if it ran.
    pub last_status: Option<String>,
    /// Violating rows then.
    pub last_failing: Option<i64>,
    /// When (RFC 3339).
    pub last_checked: Option<String>,
}

/// One data product.
#[derive(Debug, Clone, Serialize)]
pub struct ProductDoc {
    /// Name.
    pub name: String,
    /// What it offers.
    pub description: Option<String>,
    /// Who answers for it.
    pub owner: Option<String>,
    /// Who relies on it.
    pub consumers: Vec<String>,
    /// Its tables.
    pub models: Vec<String>,
    /// The freshness SLA, as written back (`26h`), if any.
    pub freshness: Option<String>,
    /// How it is reached.
    pub access: Vec<String>,
    /// Whether every table was built within the SLA (none without an SLA or a build).
    pub fresh: Option<bool>,
}

/// Gathers the catalog.
pub async fn catalog(engine: &Engine) -> Result<Catalog> {
    let project = &engine.project;
    let graph = &engine.graph;
    let state = &engine.state;
    let now = chrono::Utc::now();
    // Column lineage, from each model's plan.
    let plans = crate::validate::check_plans(project, graph).await;
    let mut tables = vec![];
    for name in graph.order() {
        let Some(node) = graph.node(name) else {
            continue;
        };
        let model = project.models.get(name);
        let source = match &node.kind {
            NodeKind::Source(s) => project.sources.get(s),
            NodeKind::Model => None,
        };
        let table = engine.lake.open_existing(name).await?;
        let version = table.as_ref().and_then(version_of);
        let contract = model.map(|m| m.config.columns.clone()).unwrap_or_default();
        let mut columns: Vec<ColumnDoc> = match &table {
            Some(t) => {
                let snapshot = t.snapshot().context(|| format!("reading {name}"))?;
                snapshot
                    .snapshot()
                    .arrow_schema()
                    .fields()
                    .iter()
                    .map(|f| ColumnDoc {
                        name: f.name().clone(),
                        ty: type_name(f.data_type()),
                        nullable: f.is_nullable(),
                        description: None,
                        derived_from: vec![],
                    })
                    .collect()
            }
            None => match (source.and_then(|s| s.columns.clone()), contract.is_empty()) {
                (Some(cols), _) => cols
                    .into_iter()
                    .map(|(n, t)| ColumnDoc {
                        name: n,
                        ty: t.to_string(),
                        nullable: true,
                        description: None,
                        derived_from: vec![],
                    })
                    .collect(),
                (None, false) => contract
                    .iter()
                    .map(|c| ColumnDoc {
                        name: c.name.clone(),
                        ty: c.ty.as_ref().map(|t| t.to_string()).unwrap_or_default(),
                        nullable: c.nullable,
                        description: None,
                        derived_from: vec![],
                    })
                    .collect(),
                (None, true) => vec![],
            },
        };
        for c in &mut columns {
            if let Some(lineage) = plans.lineage.get(name)
                && let Some((_, edges)) = lineage.iter().find(|(n, _)| *n == c.name)
            {
                c.derived_from = edges
                    .iter()
                    .map(|e| {
                        format!(
                            "{} ({})",
                            e.from,
                            if e.copy { "copy" } else { "transformation" }
                        )
                    })
                    .collect();
            }
            if let Some(spec) = contract.iter().find(|s| s.name == c.name) {
                c.description = spec.description.clone();
                if !spec.nullable {
                    c.nullable = false;
                }
            }
        }
        let history = state
            .check_history(name)
            .await
            .context(|| "reading check results".into())?;
        let declared = model
            .map(|m| m.config.checks.clone())
            .or_else(|| source.map(|s| s.checks.clone()))
            .unwrap_or_default();
        let mut checks: Vec<CheckDoc> = declared
            .iter()
            .map(|c| (c.name.clone(), on_failure(c)))
            .chain(node.sql_checks.iter().filter_map(|i| {
                project.sql_checks.get(*i).map(|f| {
                    (
                        format!("checks/{}.sql", f.name),
                        severity(f.severity).to_string(),
                    )
                })
            }))
            .map(|(check, on)| {
                let last = history.iter().find(|r| r.check_name == check);
                CheckDoc {
                    name: check,
                    on_failure: on,
                    last_status: last.map(|r| r.status.clone()),
                    last_failing: last.map(|r| r.failing_rows),
                    last_checked: last.map(|r| r.checked_at.clone()),
                }
            })
            .collect();
        checks.sort_by(|a, b| a.name.cmp(&b.name));
        let last_built = match &node.kind {
            NodeKind::Source(s) => state
                .files_of(s)
                .await
                .context(|| "reading the manifest".into())?
                .last()
                .map(|f| f.ingested_at.clone()),
            NodeKind::Model => state
                .model_state(name)
                .await
                .context(|| "reading model state".into())?
                .map(|m| m.built_at),
        };
        tables.push(TableDoc {
            name: name.clone(),
            layer: node.layer.as_str().to_string(),
            kind: match (model, source) {
                (Some(m), _) => match m.config.materialized {
                    strata_project::Materialization::Incremental => {
                        format!("incremental ({})", m.config.strategy.as_str())
                    }
                    other => other.as_str().to_string(),
                },
                _ => "source".into(),
            },
            description: model
                .and_then(|m| m.config.description.clone())
                .or_else(|| source.and_then(|s| s.description.clone())),
            owner: model.and_then(|m| m.config.owner.clone()),
            tags: node.tags.clone(),
            defined_in: model
                .map(|m| m.path.display().to_string())
                .unwrap_or_else(|| strata_project::CONFIG_FILE.to_string()),
            sql: model.map(|m| m.sql.clone()).unwrap_or_default(),
            columns,
            upstream: node.upstream.clone(),
            downstream: node.downstream.clone(),
            checks,
            version,
            last_built,
            products: project
                .products
                .values()
                .filter(|p| p.models.contains(name))
                .map(|p| p.name.clone())
                .collect(),
            partitioning: model
                .and_then(|m| m.config.partitioning.as_ref())
                .map(|p| format!("{} on {}", p.grain.as_str(), p.column)),
        });
    }
    let products = project
        .products
        .values()
        .map(|p| {
            let fresh = p.freshness_seconds.and_then(|sla| {
                let built: Option<Vec<chrono::DateTime<chrono::Utc>>> = p
                    .models
                    .iter()
                    .map(|m| {
                        tables
                            .iter()
                            .find(|t| &t.name == m)
                            .and_then(|t| t.last_built.as_deref())
                            .and_then(|b| chrono::DateTime::parse_from_rfc3339(b).ok())
                            .map(|b| b.with_timezone(&chrono::Utc))
                    })
                    .collect();
                built.map(|b| b.iter().all(|t| (now - *t).num_seconds() <= sla))
            });
            ProductDoc {
                name: p.name.clone(),
                description: p.description.clone(),
                owner: p.owner.clone(),
                consumers: p.consumers.clone(),
                models: p.models.clone(),
                freshness: p.freshness_seconds.map(human_seconds),
                access: p
                    .access
                    .iter()
                    .map(|a| format!("{a:?}").to_lowercase())
                    .collect(),
                fresh,
            }
        })
        .collect();
    Ok(Catalog {
        project: project.name.clone(),
        generated_at: strata_state::now(),
        tables,
        products,
    })
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Warn => "warn",
        Severity::Error => "error",
    }
}

fn on_failure(c: &strata_project::Check) -> String {
    match c.on_fail {
        Some(OnFail::Warn) => "row: warn".into(),
        Some(OnFail::Drop) => "row: drop".into(),
        Some(OnFail::Quarantine) => "row: quarantine".into(),
        Some(OnFail::Fail) => "row: fail".into(),
        None if matches!(c.kind, CheckKind::Sql(_)) => severity(c.severity).into(),
        None => severity(c.severity).into(),
    }
}

/// `93600` → `26h`.
fn human_seconds(s: i64) -> String {
    match s {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A short SQL-ish name of an Arrow type.
fn type_name(t: &datafusion::arrow::datatypes::DataType) -> String {
    use datafusion::arrow::datatypes::DataType as D;
    match t {
        D::Int64 => "bigint".into(),
        D::Int32 => "int".into(),
        D::Int16 => "smallint".into(),
        D::Float64 => "double".into(),
        D::Float32 => "float".into(),
        D::Utf8 | D::LargeUtf8 | D::Utf8View => "string".into(),
        D::Boolean => "boolean".into(),
        D::Date32 | D::Date64 => "date".into(),
        D::Timestamp(_, Some(_)) => "timestamp".into(),
        D::Timestamp(_, None) => "timestamp_ntz".into(),
        D::Decimal128(p, s) => format!("decimal({p},{s})"),
        other => other.to_string().to_lowercase(),
    }
}
