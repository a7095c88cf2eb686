//! `strata serve`'s endpoints, beside the scheduler (which `strata-cli` runs):
//! - SQL over the Postgres wire protocol, read-only, per-login layer
//!   visibility ([`sql`]);
//! - the HTTP API with its OpenAPI document at `/api/openapi.json`, bearer
//!   tokens with `read` and `admin` scopes ([`api`]);
//! - the web dashboard, its assets embedded in the binary ([`dashboard`]);
//! - `/metrics` (Prometheus text exposition) and `/healthz`.
//!
//! Every table served reads its newest commit when a query is planned (see
//! `strata_engine::Engine::serving_context`), so a run's commit shows at once.
//!
//! ```no_run
//! # async fn f(engine: strata_engine::Engine) -> Result<(), Box<dyn std::error::Error>> {
//! let addr: std::net::SocketAddr = "127.0.0.1:8080".parse()?;
//! let auth = strata_server::auth::api_auth(&engine.project().serve, &addr)?;
//! let app = strata_server::router(strata_server::AppState::new(engine, auth));
//! let listener = tokio::net::TcpListener::bind(addr).await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod api;
pub mod auth;
pub mod dashboard;
pub mod metrics;
pub mod query;
pub mod sql;

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use strata_engine::Engine;
use strata_graph::Graph;
use strata_project::Project;
use strata_state::StateStore;

pub use api::{Control, ControlError, StartRun};
pub use auth::{ApiAuth, Caller};
pub use query::Sessions;

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// `[serve]` or the environment it refers to is wrong.
    #[error("{0}")]
    Config(String),
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The project served.
    pub project: Arc<Project>,
    /// Its DAG.
    pub graph: Arc<Graph>,
    /// Its state store.
    pub store: StateStore,
    /// Query sessions over its lake.
    pub sessions: Sessions,
    /// How callers are authenticated.
    pub auth: ApiAuth,
    /// Starts runs for the API (none: triggering answers 503).
    pub control: Option<Arc<dyn Control>>,
}

impl AppState {
    /// State over an engine, with no way to start runs yet.
    pub fn new(engine: Engine, auth: ApiAuth) -> Self {
        Self::with_sessions(Sessions::new(engine), auth)
    }

    /// State over existing sessions (shared with the SQL endpoint).
    pub fn with_sessions(sessions: Sessions, auth: ApiAuth) -> Self {
        let engine = sessions.engine();
        Self {
            project: engine.shared_project(),
            graph: engine.shared_graph(),
            store: engine.state().clone(),
            sessions,
            auth,
            control: None,
        }
    }

    /// Lets the API start runs through `control`.
    pub fn with_control(mut self, control: Arc<dyn Control>) -> Self {
        self.control = Some(control);
        self
    }
}

/// Every route: the API, the dashboard, `/metrics`, `/healthz`.
pub fn router(state: AppState) -> Router {
    api::routes(state.clone())
        .merge(dashboard::routes())
        .with_state(state)
}

/// A JSON error body `{"error": msg}` with `code`.
pub(crate) fn error(code: StatusCode, msg: &str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"error": msg}).to_string(),
    )
        .into_response()
}
