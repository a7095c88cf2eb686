//! Deployment records: after a task succeeds, the table's definition
//! fingerprint and its output columns — planned the way `strata plan` plans
//! them, over the deployed columns of the tables it reads — go to the state
//! store, so the next `strata plan` can say what a change would do.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use strata_graph::NodeKind;
use strata_state::{DeployedColumn, Deployment};

use crate::engine::Engine;
use crate::error::{Context, Result};
use crate::ingest::quarantine_schema;
use crate::validate::{plan_model, quarantine_of, register_schemas, source_schema};

/// A schema as stored columns.
pub fn columns_of(schema: &Schema) -> Vec<DeployedColumn> {
    schema
        .fields()
        .iter()
        .map(|f| DeployedColumn {
            name: f.name().clone(),
            ty: f.data_type().to_string(),
            nullable: f.is_nullable(),
        })
        .collect()
}

/// Stored columns as a schema (a type that no longer parses becomes Utf8).
fn schema_of(columns: &[DeployedColumn]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| {
                Field::new(
                    &c.name,
                    DataType::from_str(&c.ty).unwrap_or(DataType::Utf8),
                    c.nullable,
                )
            })
            .collect::<Vec<_>>(),
    ))
}

impl Engine {
    /// The deployed schema of `table`: recorded by this process, else in the
    /// state store, else (a table built before deployments were recorded) as
    /// stored in the lake.
    async fn deployed_schema(&self, table: &str) -> Result<Option<SchemaRef>> {
        if let Some(s) = self.deployed_cache().get(table) {
            return Ok(Some(s.clone()));
        }
        if let Some(base) = table.strip_suffix("_quarantine")
            && let Some(node) = self.graph.node(base)
        {
            return Ok(match node.kind {
                NodeKind::Source(_) => Some(quarantine_schema()),
                NodeKind::Model => Box::pin(self.deployed_schema(base))
                    .await?
                    .map(|s| quarantine_of(&s)),
            });
        }
        if let Some(d) = self
            .state
            .deployment(table)
            .await
            .context(|| format!("reading the deployment of {table}"))?
        {
            return Ok(Some(schema_of(&d.columns)));
        }
        let Some(t) = self.reader_lake(table).open_existing(table).await? else {
            return Ok(None);
        };
        Ok(t.snapshot().ok().map(|s| s.snapshot().arrow_schema()))
    }

    fn deployed_cache(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SchemaRef>> {
        self.deployed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `table` was just built (or found up to date) by `run_id`;
    /// returns its schema and, for a model, its column lineage. A model whose
    /// inputs' columns are unknown is not recorded.
    pub async fn record_deployment(
        &self,
        table: &str,
        run_id: &str,
    ) -> Result<Option<(SchemaRef, Option<crate::lineage::ModelLineage>)>> {
        let Some(node) = self.graph.node(table) else {
            return Ok(None);
        };
        let (kind, fingerprint, materialized, schema, lineage) = match &node.kind {
            NodeKind::Source(name) => {
                let Some(source) = self.project.sources.get(name) else {
                    return Ok(None);
                };
                let Some(schema) = source_schema(&self.lake, source).await else {
                    return Ok(None);
                };
                (
                    "source",
                    strata_graph::plan::source_fingerprint(source),
                    "ingest".to_string(),
                    schema,
                    None,
                )
            }
            NodeKind::Model => {
                let Some(model) = self.project.models.get(table) else {
                    return Ok(None);
                };
                let mut inputs: BTreeMap<String, SchemaRef> = BTreeMap::new();
                for t in &node.tables {
                    match self.deployed_schema(t).await? {
                        Some(s) => {
                            inputs.insert(t.clone(), s);
                        }
                        None => return Ok(None),
                    }
                }
                let ctx = self.context();
                register_schemas(&ctx, &node.tables, &inputs);
                let Ok((schema, lineage)) = plan_model(&ctx, model).await else {
                    return Ok(None); // it just ran, so this only happens if an input changed under it
                };
                (
                    "model",
                    strata_graph::plan::model_fingerprint(model),
                    model.config.materialized.as_str().to_string(),
                    schema,
                    Some(lineage),
                )
            }
        };
        self.deployed_cache()
            .insert(table.to_string(), schema.clone());
        self.state
            .record_deployment(&Deployment {
                name: table.to_string(),
                kind: kind.to_string(),
                fingerprint,
                materialized,
                columns: columns_of(&schema),
                run_id: run_id.to_string(),
                deployed_at: String::new(),
            })
            .await
            .context(|| format!("recording the deployment of {table}"))?;
        Ok(Some((schema, lineage)))
    }
}
