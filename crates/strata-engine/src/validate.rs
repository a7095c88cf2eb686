//! Plans every model against the schemas it would read — declared source
//! columns, existing bronze tables, and the planned output of upstream models —
//! without reading or writing any data. Planning errors (an unknown column, a
//! type mismatch, a bad function) are located in the model's file.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::MemTable;
use strata_graph::{Graph, NodeKind};
use strata_project::{Errors, LocatedError, Materialization, Project};

use crate::engine::session_context;
use crate::ingest::{quarantine_schema, rows::schema_of, with_metadata_schema};
use crate::lake::Lake;

/// What planning found.
#[derive(Debug, Default)]
pub struct PlanCheck {
    /// Located planning errors.
    pub errors: Errors,
    /// Models planned successfully.
    pub planned: usize,
    /// Models not planned because an input's schema is unknown (a source
    /// without declared columns that was never ingested), with that input.
    pub unknown: Vec<(String, String)>,
    /// The schema of every table whose schema is known, planned ones included.
    pub schemas: BTreeMap<String, SchemaRef>,
    /// Each planned model's column lineage (direct origins of each column).
    pub lineage: BTreeMap<String, crate::lineage::ModelLineage>,
    /// The contract violations among `errors`, by model.
    pub contracts: BTreeMap<String, Vec<String>>,
}

/// Plans every model of `project` in dependency order.
pub async fn check_plans(project: &Project, graph: &Graph) -> PlanCheck {
    let ctx = session_context(project.max_parallel, Arc::default());
    let lake = Lake::of(project);
    let mut out = PlanCheck::default();
    let mut known: BTreeMap<String, SchemaRef> = BTreeMap::new();
    for s in project.sources.values() {
        if let Some(schema) = source_schema(&lake, s).await {
            known.insert(s.table(), schema);
        }
        known.insert(s.quarantine_table(), quarantine_schema());
    }
    for name in graph.order() {
        let Some(node) = graph.node(name) else {
            continue;
        };
        if !matches!(node.kind, NodeKind::Model) {
            continue;
        }
        let Some(model) = project.models.get(name) else {
            continue;
        };
        if let Some(missing) = node.tables.iter().find(|t| !known.contains_key(*t)) {
            out.unknown.push((name.clone(), missing.clone()));
            continue;
        }
        register_schemas(&ctx, &node.tables, &known);
        match plan_model(&ctx, model).await {
            Ok((schema, lineage)) => {
                out.planned += 1;
                for problem in contract_violations(model, &schema) {
                    out.contracts
                        .entry(name.clone())
                        .or_default()
                        .push(problem.clone());
                    out.errors.push(
                        LocatedError::file(&model.path, problem).with_help(
                            "change the query or the `[columns]` contract in the header",
                        ),
                    );
                }
                for k in &model.config.unique_key {
                    if schema.field_with_name(k).is_err() {
                        out.errors.push(
                            LocatedError::file(
                                &model.path,
                                format!("unique_key column `{k}` is not in the query's output"),
                            )
                            .with_help("select the key column or fix `unique_key`"),
                        );
                    }
                }
                known.insert(format!("{name}_quarantine"), quarantine_of(&schema));
                known.insert(name.clone(), schema);
                out.lineage.insert(name.clone(), lineage);
            }
            Err(e) => out.errors.push(locate(&model.path, &model.sql, &e)),
        }
    }
    out.schemas = known;
    out
}

/// Plans `model` in `ctx` (where the tables it reads are registered): its
/// output schema as it will be stored (an scd2 model's validity columns
/// added) and its column lineage.
pub async fn plan_model(
    ctx: &datafusion::prelude::SessionContext,
    model: &strata_project::Model,
) -> datafusion::error::Result<(SchemaRef, crate::lineage::ModelLineage)> {
    let df = ctx
        .sql(&crate::materialize::sql_for_planning(model))
        .await?;
    let mut lineage = crate::lineage::plan_lineage(df.logical_plan());
    let mut schema: Schema = df.schema().as_arrow().clone();
    if model.config.materialized == Materialization::Scd2 {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("valid_from", ts.clone(), true));
        fields.push(Field::new("valid_to", ts, true));
        fields.push(Field::new("is_current", DataType::Boolean, true));
        for c in ["valid_from", "valid_to", "is_current"] {
            lineage.push((c.to_string(), vec![]));
        }
        schema = Schema::new(fields);
    }
    Ok((Arc::new(schema), lineage))
}

/// The schema of a model's quarantine table.
pub(crate) fn quarantine_of(schema: &Schema) -> SchemaRef {
    let mut q: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    q.push(Field::new("_rule", DataType::Utf8, true));
    q.push(Field::new("_run_id", DataType::Utf8, true));
    q.push(Field::new(
        "_quarantined_at",
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        true,
    ));
    Arc::new(Schema::new(q))
}

/// Registers an empty table of each schema in `tables` not yet in `ctx`.
pub fn register_schemas(
    ctx: &datafusion::prelude::SessionContext,
    tables: &[String],
    schemas: &BTreeMap<String, SchemaRef>,
) {
    for t in tables {
        if ctx.table_exist(t.as_str()).unwrap_or(false) {
            continue;
        }
        if let Some(schema) = schemas.get(t)
            && let Ok(mem) = MemTable::try_new(schema.clone(), vec![vec![]])
        {
            let _ = ctx.register_table(t.as_str(), Arc::new(mem));
        }
    }
}

fn locate(
    path: &std::path::Path,
    sql: &str,
    e: &datafusion::error::DataFusionError,
) -> LocatedError {
    let message = e.find_root().to_string();
    let message = message
        .strip_prefix("Error during planning: ")
        .unwrap_or(&message)
        .to_string();
    match e.diagnostic().and_then(|d| d.span) {
        Some(span) if span.start.line > 0 => LocatedError::at_line_col(
            path,
            sql,
            span.start.line as usize,
            span.start.column as usize,
            message,
        ),
        _ => LocatedError::file(path, message),
    }
}

/// A source's bronze schema: the table as it is (columns added by drift
/// included), else as declared or inferred from its first file.
pub async fn source_schema(lake: &Lake, s: &strata_project::Source) -> Option<SchemaRef> {
    match existing_schema(lake, &s.table()).await {
        Some(schema) => Some(schema),
        None => match &s.columns {
            Some(cols) => {
                // Hive folders of the first matching file give columns too.
                let mut cols = cols.clone();
                if let Some(first) = first_file_name(lake, s).await {
                    for (k, v) in crate::ingest::files::hive_values(&first) {
                        if !cols.iter().any(|(c, _)| *c == k) {
                            let t = crate::ingest::infer::infer_text([v.as_str()].into_iter());
                            cols.push((k, t));
                        }
                    }
                }
                Some(with_metadata_schema(&crate::ingest::write_schema(
                    &cols,
                    s.schema_drift,
                )))
            }
            None => inferred_schema(lake, s).await,
        },
    }
}

async fn existing_schema(lake: &Lake, table: &str) -> Option<SchemaRef> {
    let t = lake.open_existing(table).await.ok()??;
    let snapshot = t.snapshot().ok()?;
    Some(snapshot.snapshot().arrow_schema())
}

/// A file source's first matching file: a local path, or an object on storage.
enum FirstFile {
    Local(std::path::PathBuf),
    Remote(deltalake::logstore::ObjectStoreRef, crate::storage::Listed),
}

impl FirstFile {
    /// Its name (path or URL), as the manifest and Hive columns see it.
    fn name(&self) -> String {
        match self {
            FirstFile::Local(p) => p.display().to_string(),
            FirstFile::Remote(_, l) => l.url.clone(),
        }
    }
}

/// The first file matching a file source's glob (none for databases and APIs).
async fn first_file(lake: &Lake, source: &strata_project::Source) -> Option<FirstFile> {
    if source.format.is_database() || source.format == strata_project::Format::Http {
        return None; // known once ingested, or from declared columns
    }
    if crate::storage::is_remote(&source.path) {
        let (store, listed) = crate::storage::list(&source.path, lake.options())
            .await
            .ok()?;
        let one = listed.into_iter().find(|l| !l.url.ends_with('/'))?;
        return Some(FirstFile::Remote(store, one));
    }
    glob::glob(&source.path)
        .ok()?
        .filter_map(Result::ok)
        .find(|p| p.is_file())
        .map(FirstFile::Local)
}

/// The name (path or URL) of a file source's first matching file.
async fn first_file_name(lake: &Lake, source: &strata_project::Source) -> Option<String> {
    first_file(lake, source).await.map(|f| f.name())
}

/// The schema the first matching file would give (as the first ingest infers it).
async fn inferred_schema(lake: &Lake, source: &strata_project::Source) -> Option<SchemaRef> {
    // On object storage: the first matching object, fetched into a spool.
    let mut _spool = None;
    let first = match first_file(lake, source).await? {
        FirstFile::Local(path) => path,
        FirstFile::Remote(store, one) => {
            let dir = tempfile::tempdir().ok()?;
            let path = crate::storage::fetch(&store, &[one], dir.path())
                .await
                .ok()?
                .pop()?;
            _spool = Some(dir);
            path
        }
    };
    let data = match source.format {
        strata_project::Format::Parquet => crate::ingest::files::parquet_schema(&first).ok()?,
        strata_project::Format::Csv => schema_of(
            &crate::ingest::files::infer_csv(&first, &source.csv, &source.null_values).ok()?,
        ),
        strata_project::Format::Ndjson => {
            schema_of(&crate::ingest::files::infer_ndjson(&first).ok()?)
        }
        strata_project::Format::Postgres
        | strata_project::Format::Mysql
        | strata_project::Format::Http => return None,
    };
    Some(with_metadata_schema(&data))
}

/// How the query's output breaks the model's column contract, if it has one.
pub fn contract_violations(model: &strata_project::Model, schema: &Schema) -> Vec<String> {
    let contract = &model.config.columns;
    if contract.is_empty() {
        return vec![];
    }
    let mut out = vec![];
    let scd2 = model.config.materialized == Materialization::Scd2;
    for c in contract {
        if scd2
            && ["valid_from", "valid_to", "is_current"].contains(&c.name.as_str())
            && schema.field_with_name(&c.name).is_err()
        {
            continue; // added by Strata after the query
        }
        match schema.field_with_name(&c.name) {
            Err(_) => out.push(format!(
                "contract: column `{}` is missing from the query's output",
                c.name
            )),
            Ok(f) => {
                if let Some(want) = c.ty
                    && crate::ingest::rows::column_type(f.data_type()) != Some(want)
                {
                    out.push(format!(
                        "contract: column `{}` is {} but the contract says {want}",
                        c.name,
                        f.data_type()
                    ));
                }
            }
        }
    }
    let extra: Vec<&str> = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|n| {
            !["valid_from", "valid_to", "is_current"].contains(n)
                || model.config.materialized != Materialization::Scd2
        })
        .filter(|n| !contract.iter().any(|c| c.name == *n))
        .collect();
    if !extra.is_empty() {
        out.push(format!(
            "contract: the query produces columns the contract does not declare: {}",
            extra.join(", ")
        ));
    }
    out
}
