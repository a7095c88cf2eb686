//! The HTTP side of `strata serve`: `/metrics` (Prometheus text exposition
//! of what the state store records) and `/healthz`. The scheduler and the
//! alert evaluation run beside it in the same process (see `strata-cli`).
//!
//! ```no_run
//! # async fn f(project: strata_project::Project, graph: strata_graph::Graph, store: strata_state::StateStore) -> std::io::Result<()> {
//! let app = strata_server::router(strata_server::AppState::new(project, graph, store));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
#![warn(missing_docs)]

pub mod metrics;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use strata_graph::Graph;
use strata_project::Project;
use strata_state::StateStore;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The project served.
    pub project: Arc<Project>,
    /// Its DAG.
    pub graph: Arc<Graph>,
    /// Its state store.
    pub store: StateStore,
}

impl AppState {
    /// State over a loaded project.
    pub fn new(project: Project, graph: Graph, store: StateStore) -> Self {
        Self {
            project: Arc::new(project),
            graph: Arc::new(graph),
            store,
        }
    }
}

/// The routes: `GET /metrics`, `GET /healthz`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .with_state(state)
}

async fn metrics_handler(State(s): State<AppState>) -> Response {
    match metrics::render(&s.store, &s.project, &s.graph, chrono::Utc::now()).await {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn healthz(State(s): State<AppState>) -> Response {
    match s.store.runs(1).await {
        Ok(_) => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({"status": "ok", "project": s.project.name}).to_string(),
        )
            .into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("state store unreachable: {e}"),
        ),
    }
}

fn error(code: StatusCode, msg: &str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"error": msg}).to_string(),
    )
        .into_response()
}
