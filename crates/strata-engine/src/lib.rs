//! The engine: DataFusion sessions over Delta Lake tables. It ingests sources
//! into `bronze.<source>` (with quarantine and row accounting), builds models
//! (`table`, `view`, `incremental`, `scd2`) one Delta commit at a time, and
//! implements [`strata_runtime::TaskExecutor`] so the runtime can drive it.
//!
//! This is the first crate that links `datafusion` and `deltalake`; the
//! crates below it never do. All SQL runs through [`Engine::context`].
//!
//! ```no_run
//! # async fn f(project: std::sync::Arc<strata_project::Project>, graph: std::sync::Arc<strata_graph::Graph>, state: strata_state::StateStore) -> strata_engine::Result<()> {
//! let engine = strata_engine::Engine::new(project, graph, state);
//! let (_schema, batches) = engine.sql("select count(*) from gold.daily_revenue").await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod catalog;
pub mod checks;
#[cfg(feature = "ballista")]
pub mod cluster;
pub mod deploy;
mod engine;
mod error;
pub mod example;
mod executor;
pub mod file_stats;
mod having_join;
pub mod ingest;
mod join_estimate;
pub mod lake;
pub mod lineage;
mod live;
pub mod maintain;
pub mod materialize;
mod memory;
pub mod openlineage;
mod replace_range;
mod shared_build;
mod staged;
pub mod storage;
pub mod unit;
pub mod validate;

pub use engine::Engine;
pub use error::{Error, Result};
pub use executor::EngineExecutor;

/// Re-exported so the CLI formats results without its own arrow dependency.
pub use datafusion::arrow;
