//! The HTTP API: what `assets/openapi.json` documents, route by route.
//!
//! Every route but `/healthz` and `/api/openapi.json` needs a bearer token
//! (unless the API is open on loopback, see [`crate::auth::api_auth`]):
//! `read` tokens call the GET routes and `POST /api/query`; `admin` tokens
//! also start runs. Layers limit data (queries, rows, slices), not metadata:
//! every token sees the whole lineage graph and every model's docs.

// The helpers below return a ready HTTP response as their error, which handlers
// return as is; boxing it would only add noise at every call.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Extension;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use serde::Deserialize;
use strata_project::Role;

use crate::auth::Caller;
use crate::query::{
    QueryError, columns_json, page_sql, quote_table, rows_json, slice_sql, where_clause,
};
use crate::{AppState, error};

/// The OpenAPI document, as served.
pub const OPENAPI: &str = include_str!("../assets/openapi.json");

/// What starting a run asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum StartRun {
    /// A run of a selection (all when `select` is empty).
    Run {
        /// Selection expression.
        select: String,
        /// Rebuild incremental models from scratch.
        full_refresh: bool,
        /// Data interval start (date or RFC 3339).
        start: Option<String>,
        /// Data interval end.
        end: Option<String>,
    },
    /// Resume a failed or interrupted run.
    Resume {
        /// The run to resume.
        run_id: String,
    },
    /// Backfill the partitioned models of a selection.
    Backfill {
        /// Selection expression.
        select: String,
        /// Range start.
        start: String,
        /// Range end.
        end: String,
        /// Intervals at once.
        parallel: Option<usize>,
    },
}

/// Why a run did not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ControlError {
    /// The request is wrong (bad selection, nothing to resume, …): 400.
    #[error("{0}")]
    Invalid(String),
    /// No such run: 404.
    #[error("{0}")]
    NotFound(String),
    /// Something else failed: 500.
    #[error("{0}")]
    Failed(String),
}

/// Starts runs for the API; implemented by the process that serves (the
/// CLI), which owns the runs it starts.
#[async_trait]
pub trait Control: Send + Sync {
    /// Starts `req` in the background and returns its run id at once.
    async fn start(&self, req: StartRun) -> Result<String, ControlError>;
}

/// The API's routes (to merge into the app before `with_state`).
pub fn routes(state: AppState) -> Router<AppState> {
    let read = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/me", get(me))
        .route("/api/overview", get(overview))
        .route("/api/models", get(models))
        .route("/api/models/{name}", get(model))
        .route("/api/lineage", get(lineage))
        .route("/api/products", get(products))
        .route("/api/runs", get(runs).post(trigger_run))
        .route("/api/runs/{id}", get(run))
        .route("/api/runs/{id}/resume", post(resume_run))
        .route("/api/backfills", post(trigger_backfill))
        .route("/api/checks", get(checks))
        .route("/api/alerts", get(alerts))
        .route("/api/query", post(query))
        .route("/api/tables/{name}/rows", get(table_rows))
        .route("/api/tables/{name}/slice", get(table_slice))
        .route("/api/tables/{name}/optimize", post(optimize_table))
        .route("/api/tables/{name}/vacuum", post(vacuum_table))
        .layer(from_fn_with_state(state, authenticate));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/openapi.json", get(openapi))
        .merge(read)
}

async fn authenticate(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match s.auth.caller(header) {
        Some(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        None => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is required (Authorization: Bearer TOKEN; tokens are [serve.tokens] in strata.toml)",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            r
        }
    }
}

fn admin_only(c: &Caller) -> Result<(), Response> {
    if c.role == Role::Admin {
        Ok(())
    } else {
        Err(error(
            StatusCode::FORBIDDEN,
            &format!(
                "token `{}` has the read scope; starting runs needs an admin token",
                c.name
            ),
        ))
    }
}

fn json(v: serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn store_error(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("the state store cannot be read: {e}"),
    )
}

fn to_value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

async fn healthz(State(s): State<AppState>) -> Response {
    match s.store.runs(1).await {
        Ok(_) => json(serde_json::json!({"status": "ok", "project": s.project.name})),
        Err(e) => store_error(e),
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    match crate::metrics::render(&s.store, &s.project, &s.graph, Utc::now()).await {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => store_error(e),
    }
}

async fn me(Extension(c): Extension<Caller>) -> Response {
    json(serde_json::json!({"name": c.name, "scope": c.scope(), "layers": c.layers}))
}

fn freshness_json(f: &strata_runtime::monitor::Freshness) -> serde_json::Value {
    let mut v = to_value(f);
    if let Some(o) = v.as_object_mut() {
        o.insert("stale".into(), f.stale().into());
    }
    v
}

async fn overview(State(s): State<AppState>) -> Response {
    let now = Utc::now();
    let health = match strata_runtime::monitor::evaluate(&s.store, &s.project, &s.graph, now).await
    {
        Ok(h) => h,
        Err(e) => return store_error(e),
    };
    let (runs, open) = match (s.store.runs(10).await, s.store.open_incidents().await) {
        (Ok(r), Ok(o)) => (r, o),
        (Err(e), _) | (_, Err(e)) => return store_error(e),
    };
    let count =
        |k: strata_project::AlertOn| health.conditions.iter().filter(|c| c.kind == k).count();
    json(serde_json::json!({
        "project": s.project.name,
        "generated_at": now.to_rfc3339(),
        "conditions": to_value(&health.conditions),
        "freshness": health.freshness.iter().map(freshness_json).collect::<Vec<_>>(),
        "recent_runs": to_value(&runs),
        "open_alerts": to_value(&open),
        "counts": {
            "tables": s.graph.order().len(),
            "failing_checks": count(strata_project::AlertOn::CheckFailed),
            "stale_tables": health.freshness.iter().filter(|f| f.stale()).count(),
            "failed_tasks": count(strata_project::AlertOn::TaskFailed),
            "open_alerts": open.len(),
        },
    }))
}

async fn catalog(s: &AppState) -> Result<strata_engine::catalog::Catalog, Response> {
    strata_engine::catalog::catalog(s.sessions.engine())
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))
}

async fn models(State(s): State<AppState>) -> Response {
    match catalog(&s).await {
        Ok(c) => json(to_value(&c.tables)),
        Err(r) => r,
    }
}

fn not_found(what: &str) -> Response {
    error(StatusCode::NOT_FOUND, what)
}

async fn model(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    let cat = match catalog(&s).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(doc) = cat.tables.iter().find(|t| t.name == name) else {
        return not_found(&format!("no table `{name}`"));
    };
    let history = match s.store.model_tasks(&name, 100).await {
        Ok(h) => h,
        Err(e) => return store_error(e),
    };
    let check_history = match s.store.check_history(&name).await {
        Ok(h) => h,
        Err(e) => return store_error(e),
    };
    let versions = s
        .sessions
        .engine()
        .lake()
        .versions(&name, 50)
        .await
        .unwrap_or_default();
    let freshness =
        match strata_runtime::monitor::evaluate(&s.store, &s.project, &s.graph, Utc::now()).await {
            Ok(h) => h
                .freshness
                .iter()
                .find(|f| f.table == name)
                .map(freshness_json)
                .unwrap_or(serde_json::Value::Null),
            Err(e) => return store_error(e),
        };
    let mut v = to_value(doc);
    if let Some(o) = v.as_object_mut() {
        o.insert("history".into(), to_value(&history));
        o.insert("check_history".into(), to_value(&check_history));
        o.insert("versions".into(), to_value(&versions));
        o.insert("freshness".into(), freshness);
    }
    json(v)
}

async fn lineage(State(s): State<AppState>) -> Response {
    let health =
        match strata_runtime::monitor::evaluate(&s.store, &s.project, &s.graph, Utc::now()).await {
            Ok(h) => h,
            Err(e) => return store_error(e),
        };
    let mut failing: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &health.conditions {
        if c.kind == strata_project::AlertOn::CheckFailed {
            for t in &c.tables {
                *failing.entry(t.as_str()).or_default() += 1;
            }
        }
    }
    let stale: Vec<&str> = health
        .freshness
        .iter()
        .filter(|f| f.stale())
        .map(|f| f.table.as_str())
        .collect();
    let mut nodes = vec![];
    let mut edges = vec![];
    for name in s.graph.order() {
        let Some(node) = s.graph.node(name) else {
            continue;
        };
        let kind = match &node.kind {
            strata_graph::NodeKind::Source(_) => "source".to_string(),
            _ => s
                .project
                .models
                .get(name)
                .map(|m| m.config.materialized.as_str().to_string())
                .unwrap_or_else(|| "model".into()),
        };
        nodes.push(serde_json::json!({
            "name": name,
            "layer": name.split('.').next().unwrap_or_default(),
            "kind": kind,
            "status": health.latest.get(name).map(|t| t.status.clone()),
            "failing_checks": failing.get(name.as_str()).copied().unwrap_or(0),
            "stale": stale.contains(&name.as_str()),
        }));
        for up in &node.tables {
            if s.graph.node(up).is_some() {
                edges.push(serde_json::json!({"from": up, "to": name}));
            }
        }
    }
    json(serde_json::json!({"nodes": nodes, "edges": edges}))
}

async fn products(State(s): State<AppState>) -> Response {
    match catalog(&s).await {
        Ok(c) => json(to_value(&c.products)),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<i64>,
}

async fn runs(State(s): State<AppState>, Query(q): Query<Limit>) -> Response {
    let limit = q.limit.unwrap_or(20);
    if !(1..=1000).contains(&limit) {
        return error(StatusCode::BAD_REQUEST, "limit must be between 1 and 1000");
    }
    match s.store.runs(limit).await {
        Ok(r) => json(to_value(&r)),
        Err(e) => store_error(e),
    }
}

async fn run(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let run = match s.store.run(&id).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(&format!("no run `{id}`")),
        Err(e) => return store_error(e),
    };
    let tasks = match s.store.tasks(&id).await {
        Ok(t) => t,
        Err(e) => return store_error(e),
    };
    let mut v = to_value(&run);
    if let Some(o) = v.as_object_mut() {
        o.insert("tasks".into(), to_value(&tasks));
    }
    json(v)
}

async fn start(s: &AppState, req: StartRun) -> Response {
    let Some(control) = &s.control else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this server cannot start runs",
        );
    };
    match control.start(req).await {
        Ok(run_id) => (
            StatusCode::ACCEPTED,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({"run_id": run_id}).to_string(),
        )
            .into_response(),
        Err(ControlError::Invalid(m)) => error(StatusCode::BAD_REQUEST, &m),
        Err(ControlError::NotFound(m)) => error(StatusCode::NOT_FOUND, &m),
        Err(ControlError::Failed(m)) => error(StatusCode::INTERNAL_SERVER_ERROR, &m),
    }
}

/// A JSON body, or a 400 that says what is wrong with it (an empty body is `{}`).
fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, Response> {
    let text: &[u8] = if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(text).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("the request body is not valid: {e}"),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    select: Option<String>,
    #[serde(default)]
    full_refresh: bool,
    start: Option<String>,
    end: Option<String>,
}

async fn trigger_run(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    bytes: Bytes,
) -> Response {
    if let Err(r) = admin_only(&c) {
        return r;
    }
    let b: RunBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    start(
        &s,
        StartRun::Run {
            select: b.select.unwrap_or_default(),
            full_refresh: b.full_refresh,
            start: b.start,
            end: b.end,
        },
    )
    .await
}

async fn resume_run(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = admin_only(&c) {
        return r;
    }
    start(&s, StartRun::Resume { run_id: id }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackfillBody {
    start: String,
    end: String,
    select: Option<String>,
    parallel: Option<usize>,
}

async fn trigger_backfill(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    bytes: Bytes,
) -> Response {
    if let Err(r) = admin_only(&c) {
        return r;
    }
    let b: BackfillBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    start(
        &s,
        StartRun::Backfill {
            select: b.select.unwrap_or_default(),
            start: b.start,
            end: b.end,
            parallel: b.parallel,
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptimizeBody {
    target_size: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VacuumBody {
    retain_hours: Option<u64>,
    #[serde(default)]
    unsafe_retention: bool,
    #[serde(default)]
    dry_run: bool,
}

/// A maintenance request's body: 403 for a caller who is not an admin, 400
/// for a bad body, 404 unless `name` is one of the project's Delta tables.
fn maintenance_request<T: serde::de::DeserializeOwned>(
    s: &AppState,
    c: &Caller,
    name: &str,
    bytes: &Bytes,
) -> Result<T, Response> {
    admin_only(c)?;
    let b = body(bytes)?;
    let tables = strata_engine::maintain::tables_of(&s.project, &s.graph, None);
    if !tables.iter().any(|t| t == name) {
        return Err(error(
            StatusCode::NOT_FOUND,
            &format!("{name} is not a table of this project (views have no files)"),
        ));
    }
    Ok(b)
}

/// A maintenance result: the one table's metrics, 404 when it is not built
/// yet, 400 for what the user asked wrong.
fn maintenance_result<T: serde::Serialize>(
    name: &str,
    done: strata_engine::Result<Vec<T>>,
) -> Response {
    match done {
        Ok(mut done) => match done.pop() {
            Some(m) => json(to_value(&m)),
            None => error(
                StatusCode::NOT_FOUND,
                &format!("{name} has not been built yet"),
            ),
        },
        Err(strata_engine::Error::User(m)) => error(StatusCode::BAD_REQUEST, &m),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn optimize_table(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Response {
    let b: OptimizeBody = match maintenance_request(&s, &c, &name, &bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut optimize = strata_engine::maintain::Optimize::new();
    if let Some(t) = b.target_size {
        match strata_project::parse_size(&t) {
            Ok(n) => optimize = optimize.with_target_size(n as u64),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("target_size `{t}` is not a size such as 128MB or 1GiB"),
                );
            }
        }
    }
    let done = optimize
        .execute(s.sessions.engine(), std::slice::from_ref(&name), |_| {})
        .await;
    maintenance_result(&name, done)
}

async fn vacuum_table(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Response {
    let b: VacuumBody = match maintenance_request(&s, &c, &name, &bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut vacuum = strata_engine::maintain::Vacuum::new();
    if let Some(h) = b.retain_hours {
        vacuum = vacuum.with_retention_hours(h);
    }
    if b.unsafe_retention {
        vacuum = vacuum.unsafe_retention();
    }
    if b.dry_run {
        vacuum = vacuum.dry_run();
    }
    let done = vacuum
        .execute(s.sessions.engine(), std::slice::from_ref(&name), |_| {})
        .await;
    maintenance_result(&name, done)
}

async fn checks(State(s): State<AppState>) -> Response {
    match s.store.latest_check_results().await {
        Ok(r) => json(to_value(&r)),
        Err(e) => store_error(e),
    }
}

async fn alerts(State(s): State<AppState>) -> Response {
    let now = Utc::now().to_rfc3339();
    let (incidents, silences) = match (
        s.store.incidents(200).await,
        s.store.active_silences(&now).await,
    ) {
        (Ok(i), Ok(si)) => (i, si),
        (Err(e), _) | (_, Err(e)) => return store_error(e),
    };
    let mut incidents = incidents;
    incidents.sort_by_key(|i| i.status != "firing");
    let rules: Vec<serde_json::Value> = s
        .project
        .alerts
        .values()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "on": r.on.iter().map(|o| o.as_str()).collect::<Vec<_>>(),
                "silenced_until": silences.iter().find(|x| x.rule == r.name).map(|x| x.until.clone()),
            })
        })
        .collect();
    json(serde_json::json!({"incidents": to_value(&incidents), "rules": rules}))
}

fn query_error(e: QueryError) -> Response {
    match e {
        QueryError::ReadOnly(m) => error(StatusCode::FORBIDDEN, &m),
        QueryError::Invalid(m) => error(StatusCode::BAD_REQUEST, &m),
        QueryError::Failed(m) => error(StatusCode::INTERNAL_SERVER_ERROR, &m),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    sql: String,
    format: Option<String>,
}

async fn query(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    bytes: Bytes,
) -> Response {
    let b: QueryBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let format = b.format.as_deref().unwrap_or("json");
    if !["json", "csv", "arrow", "parquet"].contains(&format) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("unknown format `{format}`: json, csv, arrow or parquet"),
        );
    }
    let (schema, stream) = match s.sessions.stream(&c.layers, &b.sql).await {
        Ok(x) => x,
        Err(e) => return query_error(e),
    };
    match format {
        "csv" => streamed("text/csv", csv_stream(stream)),
        "arrow" => streamed(
            "application/vnd.apache.arrow.stream",
            ipc_stream(schema, stream),
        ),
        "parquet" => parquet_body(schema, stream).await,
        _ => streamed("application/json", json_stream(schema, stream)),
    }
}

fn streamed(
    content_type: &'static str,
    chunks: impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
) -> Response {
    (
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(chunks),
    )
        .into_response()
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// `{"columns": [...], "rows": [` … `]}`, one chunk per batch.
fn json_stream(
    schema: SchemaRef,
    stream: SendableRecordBatchStream,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let head = format!("{{\"columns\":{},\"rows\":[", columns_json(&schema));
    let mut first = true;
    let body = stream.map(move |batch| {
        let batch = batch.map_err(io_err)?;
        let rows = rows_json(&batch).map_err(io_err)?;
        let mut out = String::new();
        for r in rows {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&r.to_string());
        }
        Ok(Bytes::from(out))
    });
    futures::stream::once(async move { Ok(Bytes::from(head)) })
        .chain(body)
        .chain(futures::stream::once(async {
            Ok(Bytes::from_static(b"]}"))
        }))
}

fn csv_stream(
    stream: SendableRecordBatchStream,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let mut header = true;
    stream.map(move |batch| {
        let batch = batch.map_err(io_err)?;
        let mut buf = vec![];
        {
            let mut w = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(header)
                .build(&mut buf);
            w.write(&batch).map_err(io_err)?;
        }
        header = false;
        Ok(Bytes::from(buf))
    })
}

fn ipc_stream(
    schema: SchemaRef,
    stream: SendableRecordBatchStream,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    use datafusion::arrow::ipc::writer::StreamWriter;
    // The writer's buffer is drained after each batch, so each chunk holds
    // what that batch added to the stream.
    let writer = StreamWriter::try_new(Vec::new(), &schema).map_err(io_err);
    let state = Arc::new(std::sync::Mutex::new(writer.map(Some)));
    let take = |w: &mut StreamWriter<Vec<u8>>| std::mem::take(w.get_mut());
    let s1 = state.clone();
    let head = futures::stream::once(async move {
        let mut g = s1.lock().map_err(io_err)?;
        match g.as_mut() {
            Ok(Some(w)) => Ok(Bytes::from(take(w))),
            Ok(None) => Ok(Bytes::new()),
            Err(e) => Err(io_err(e)),
        }
    });
    let s2 = state.clone();
    let body = stream.map(move |batch| {
        let batch = batch.map_err(io_err)?;
        let mut g = s2.lock().map_err(io_err)?;
        match g.as_mut() {
            Ok(Some(w)) => {
                w.write(&batch).map_err(io_err)?;
                Ok(Bytes::from(take(w)))
            }
            _ => Err(io_err("the Arrow stream writer failed")),
        }
    });
    let tail = futures::stream::once(async move {
        let mut g = state.lock().map_err(io_err)?;
        match g.as_mut() {
            Ok(Some(w)) => {
                w.finish().map_err(io_err)?;
                Ok(Bytes::from(take(w)))
            }
            _ => Err(io_err("the Arrow stream writer failed")),
        }
    });
    head.chain(body).chain(tail)
}

/// Parquet needs its footer at the end: the file is written whole, then sent.
async fn parquet_body(schema: SchemaRef, mut stream: SendableRecordBatchStream) -> Response {
    use datafusion::parquet::arrow::ArrowWriter;
    let mut buf = vec![];
    let result: Result<(), String> = async {
        let mut w = ArrowWriter::try_new(&mut buf, schema, None).map_err(|e| e.to_string())?;
        while let Some(b) = stream.next().await {
            w.write(&b.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        w.close().map_err(|e| e.to_string())?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => (
            [(header::CONTENT_TYPE, "application/vnd.apache.parquet")],
            buf,
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

/// Every row of `batches` as JSON arrays.
fn all_rows(
    batches: &[datafusion::arrow::record_batch::RecordBatch],
) -> Result<Vec<serde_json::Value>, QueryError> {
    let mut rows = vec![];
    for b in batches {
        rows.extend(rows_json(b)?);
    }
    Ok(rows)
}

/// Checks `name` is a table of the project the caller may read.
fn readable(s: &AppState, c: &Caller, name: &str) -> Result<(), Response> {
    let known = s.graph.node(name).is_some()
        || s.project
            .sources
            .values()
            .any(|src| src.quarantine_table() == name)
        || name
            .strip_suffix("_quarantine")
            .is_some_and(|m| s.project.models.contains_key(m));
    if !known {
        return Err(not_found(&format!("no table `{name}`")));
    }
    let layer = name.split('.').next().unwrap_or_default();
    if !c.layers.iter().any(|l| l == layer) {
        return Err(error(
            StatusCode::FORBIDDEN,
            &format!(
                "token `{}` may not read the {layer} layer (it reads: {})",
                c.name,
                c.layers.join(", ")
            ),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<usize>,
    offset: Option<usize>,
    #[serde(rename = "where")]
    filter: Option<String>,
    order_by: Option<String>,
}

async fn table_rows(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    if let Err(r) = readable(&s, &c, &name) {
        return r;
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return error(StatusCode::BAD_REQUEST, "limit must be between 1 and 10000");
    }
    let offset = q.offset.unwrap_or(0);
    let filter = q.filter.as_deref();
    let sql = page_sql(&name, filter, q.order_by.as_deref(), limit, offset);
    let (schema, batches) = match s.sessions.collect(&c.layers, &sql).await {
        Ok(x) => x,
        Err(e) => return query_error(e),
    };
    let count_sql = format!(
        "select count(*) from {}{}",
        quote_table(&name),
        where_clause(filter)
    );
    let total = match s.sessions.collect(&c.layers, &count_sql).await {
        Ok((_, b)) => b
            .first()
            .and_then(|b| rows_json(b).ok())
            .and_then(|r| r.first().and_then(|r| r[0].as_i64()))
            .unwrap_or(0),
        Err(e) => return query_error(e),
    };
    let rows = match all_rows(&batches) {
        Ok(r) => r,
        Err(e) => return query_error(e),
    };
    json(serde_json::json!({
        "columns": columns_json(&schema),
        "rows": rows,
        "limit": limit,
        "offset": offset,
        "total": total,
    }))
}

#[derive(Deserialize)]
struct SliceQuery {
    by: String,
    metric: Option<String>,
    #[serde(rename = "where")]
    filter: Option<String>,
}

async fn table_slice(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<SliceQuery>,
) -> Response {
    if let Err(r) = readable(&s, &c, &name) {
        return r;
    }
    let by: Vec<String> = q.by.split(',').map(|x| x.trim().to_string()).collect();
    let metrics: Vec<String> = q.metric.into_iter().collect();
    let sql = match slice_sql(&quote_table(&name), &by, &metrics, q.filter.as_deref()) {
        Ok(sql) => sql,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let (schema, batches) = match s.sessions.collect(&c.layers, &sql).await {
        Ok(x) => x,
        Err(e) => return query_error(e),
    };
    let rows = match all_rows(&batches) {
        Ok(r) => r,
        Err(e) => return query_error(e),
    };
    json(serde_json::json!({"columns": columns_json(&schema), "rows": rows}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        let paths = doc["paths"].as_object().expect("paths");
        for p in [
            "/healthz",
            "/metrics",
            "/api/openapi.json",
            "/api/me",
            "/api/overview",
            "/api/models",
            "/api/models/{name}",
            "/api/lineage",
            "/api/products",
            "/api/runs",
            "/api/runs/{id}",
            "/api/runs/{id}/resume",
            "/api/backfills",
            "/api/checks",
            "/api/alerts",
            "/api/query",
            "/api/tables/{name}/rows",
            "/api/tables/{name}/slice",
            "/api/tables/{name}/optimize",
            "/api/tables/{name}/vacuum",
        ] {
            assert!(paths.contains_key(p), "{p} is not documented");
        }
        assert_eq!(paths.len(), 20, "a documented route is not served");
    }
}
