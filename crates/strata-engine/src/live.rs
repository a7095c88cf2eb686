//! Sessions for serving: each layer a schema whose tables are read at their
//! newest commit whenever a query is planned, so a client sees a run's commit
//! as soon as it lands, in this process or any other.
//!
//! A delta-rs table provider is pinned to the snapshot it was made from. The
//! schema here keeps one handle per table and, at each lookup, asks the log
//! whether the next commit exists (one small read; nothing when there is
//! none) and moves the handle forward when it does.
//!
//! Time travel: `silver."orders@v3"` reads version 3 of `silver.orders`, and
//! `silver."orders@2026-11-28T10:00:00Z"` (or a date) the version current at
//! that time.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use strata_project::{Layer, Materialization};

use crate::engine::{Engine, session_context};

/// How many time-travel snapshots a schema keeps (they never change).
const PINNED_CAPACITY: usize = 64;

impl Engine {
    /// A session for serving queries: only `layers` are visible (others are
    /// not registered at all, so catalog queries do not list them either),
    /// and every table reads its newest commit at planning time.
    pub fn serving_context(&self, layers: &[String]) -> SessionContext {
        let ctx = session_context(self.project.max_parallel, self.runtime.clone());
        let Some(catalog) = ctx.catalog("datafusion") else {
            return ctx;
        };
        let this = Arc::new(OnceLock::new());
        for layer in Layer::ALL {
            let name = layer.as_str();
            if layers.iter().any(|l| l == name) {
                let schema = LiveSchema {
                    engine: self.clone(),
                    known: known_tables(self, name),
                    layer: name.to_string(),
                    ctx: this.clone(),
                    live: Default::default(),
                    pinned: Default::default(),
                };
                let _ = catalog.register_schema(name, Arc::new(schema));
            } else {
                let _ = catalog.deregister_schema(name, true);
            }
        }
        // Views plan their SQL in the same session (so they see only what it sees).
        let _ = this.set(ctx.clone());
        ctx
    }
}

/// One layer, read live.
struct LiveSchema {
    engine: Engine,
    layer: String,
    /// Its tables (the project does not change while it is served).
    known: BTreeSet<String>,
    /// The session this schema belongs to, for planning views.
    ctx: Arc<OnceLock<SessionContext>>,
    /// Newest snapshot of each table read so far.
    live: Mutex<HashMap<String, Live>>,
    /// Time-travel snapshots by `table@spec`.
    pinned: Mutex<HashMap<String, Arc<dyn TableProvider>>>,
}

#[derive(Clone)]
struct Live {
    table: DeltaTable,
    provider: Arc<dyn TableProvider>,
}

/// Every table of `layer` Strata knows (sources, models, quarantine tables),
/// without the layer prefix.
fn known_tables(engine: &Engine, layer: &str) -> BTreeSet<String> {
    let prefix = format!("{layer}.");
    let project = &engine.project;
    engine
        .graph
        .order()
        .iter()
        .cloned()
        .chain(project.sources.values().map(|s| s.quarantine_table()))
        .chain(project.models.keys().map(|m| format!("{m}_quarantine")))
        .filter_map(|n| n.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

impl std::fmt::Debug for LiveSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSchema")
            .field("layer", &self.layer)
            .finish()
    }
}

fn df_err(e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(e.to_string())
}

impl LiveSchema {
    fn is_view(&self, full: &str) -> bool {
        self.engine
            .project
            .models
            .get(full)
            .is_some_and(|m| m.config.materialized == Materialization::View)
    }

    fn exists_on_disk(&self, full: &str) -> bool {
        if self.is_view(full) {
            return true;
        }
        let root = self.engine.lake.root();
        if root.contains("://") {
            return true; // asked of the store when read
        }
        let Some((layer, table)) = full.split_once('.') else {
            return false;
        };
        std::path::Path::new(root)
            .join(layer)
            .join(table)
            .join("_delta_log")
            .is_dir()
    }

    /// The newest snapshot of `full`, moving the cached handle forward if a
    /// newer commit landed.
    async fn newest(&self, full: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let cached = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(full)
            .cloned();
        let mut table = match cached {
            Some(c) => {
                let next = c.table.version().map_or(0, |v| v + 1);
                let moved = c
                    .table
                    .log_store()
                    .read_commit_entry(next)
                    .await
                    .map_err(df_err)?
                    .is_some();
                if !moved {
                    return Ok(Some(c.provider));
                }
                let mut t = c.table;
                t.update_incremental(None).await.map_err(df_err)?;
                t
            }
            None => match self.engine.lake.open_existing(full).await.map_err(df_err)? {
                Some(t) => t,
                None => return Ok(None),
            },
        };
        if table.version().is_none() {
            table.load().await.map_err(df_err)?;
        }
        let provider = table.table_provider().await.map_err(df_err)?;
        self.live.lock().unwrap_or_else(|e| e.into_inner()).insert(
            full.to_string(),
            Live {
                table,
                provider: provider.clone(),
            },
        );
        Ok(Some(provider))
    }

    /// `full` as of a version (`v3`) or a time (a date or RFC 3339).
    async fn pinned(&self, full: &str, spec: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let key = format!("{full}@{spec}");
        if let Some(p) = self
            .pinned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(Some(p.clone()));
        }
        if !self.exists_on_disk(full) || self.is_view(full) {
            return Ok(None);
        }
        let mut table = self.engine.lake.open(full).await.map_err(df_err)?;
        if let Some(v) = spec.strip_prefix('v').and_then(|v| v.parse::<u64>().ok()) {
            table
                .load_version(v)
                .await
                .map_err(|e| DataFusionError::Plan(format!("{full} has no version {v}: {e}")))?;
        } else {
            let at = strata_project::parse_time(spec).ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "bad time travel `{spec}` on {full}: write v<N> for a version, or a date or RFC 3339 time"
                ))
            })?;
            table.load_with_datetime(at).await.map_err(|e| {
                DataFusionError::Plan(format!("{full} has no version at {spec}: {e}"))
            })?;
            // delta-rs answers version 0 for a time before the table existed.
            let first = table.version().unwrap_or(0);
            let committed = self
                .engine
                .lake
                .commit_summary(full, first as i64)
                .await
                .map_err(df_err)?
                .timestamp_ms;
            if let Some(ms) = committed.filter(|ms| *ms > at.timestamp_millis()) {
                let when = chrono::DateTime::from_timestamp_millis(ms)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default();
                return Err(DataFusionError::Plan(format!(
                    "{full} did not exist yet at {spec}: its first version is from {when}"
                )));
            }
        }
        let provider = table.table_provider().await.map_err(df_err)?;
        let mut pinned = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        if pinned.len() >= PINNED_CAPACITY {
            pinned.clear();
        }
        pinned.insert(key, provider.clone());
        Ok(Some(provider))
    }

    async fn view(&self, full: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(ctx) = self.ctx.get() else {
            return Ok(None);
        };
        let sql = &self.engine.project.models[full].sql;
        let df = Box::pin(ctx.sql(sql)).await?;
        Ok(Some(df.into_view()))
    }
}

#[async_trait]
impl SchemaProvider for LiveSchema {
    fn table_names(&self) -> Vec<String> {
        self.known
            .iter()
            .filter(|t| self.exists_on_disk(&format!("{}.{t}", self.layer)))
            .cloned()
            .collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let (base, spec) = match name.split_once('@') {
            Some((b, s)) => (b, Some(s)),
            None => (name, None),
        };
        if !self.known.contains(base) {
            return Ok(None);
        }
        let full = format!("{}.{base}", self.layer);
        match spec {
            Some(spec) => self.pinned(&full, spec).await,
            None if self.is_view(&full) => self.view(&full).await,
            None => self.newest(&full).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        let base = name.split_once('@').map_or(name, |(b, _)| b);
        self.known.contains(base) && self.exists_on_disk(&format!("{}.{base}", self.layer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hidden_layer_is_not_registered() {
        let dir = tempfile::tempdir().expect("tempdir");
        crate::example::init_shop(dir.path(), 1).expect("example");
        let project = strata_project::Project::load(dir.path()).expect("project");
        let graph = strata_graph::Graph::build(&project).expect("graph");
        let state = strata_state::StateStore::open(&project.state)
            .await
            .expect("state");
        let engine = Engine::new(Arc::new(project), Arc::new(graph), state);
        let ctx = engine.serving_context(&["gold".to_string()]);
        let catalog = ctx.catalog("datafusion").expect("catalog");
        assert!(catalog.schema("bronze").is_none());
        assert!(catalog.schema("silver").is_none());
        assert!(catalog.schema("gold").is_some());
    }
}
