//! `strata backfill` and `strata serve` (the scheduler).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use strata_engine::{Engine, EngineExecutor};
use strata_graph::Graph;
use strata_project::Project;
use strata_runtime::{
    BackfillPlan, Fired, Launcher, RunOptions, RunRequest, RunSummary, Runner, Scheduler, TaskSpec,
    rfc3339,
};
use strata_state::StateStore;

use crate::output::{right, table};
use crate::{Failure, input, progress};

/// Runs `tasks` as one run with a progress bar.
#[allow(clippy::too_many_arguments)] // one call per kind of run; a struct would only rename them
pub(crate) async fn execute(
    project: &Arc<Project>,
    graph: &Arc<Graph>,
    state: &StateStore,
    tasks: Vec<TaskSpec>,
    options: RunOptions,
    max_parallel: usize,
    show_progress: bool,
    deferred: Vec<String>,
) -> Result<RunSummary, strata_state::Error> {
    let mut engine = Engine::new(project.clone(), graph.clone(), state.clone());
    if let Some(d) = &project.defer
        && !deferred.is_empty()
    {
        engine = engine.with_deferred(
            &strata_engine::lake::Lake::with_options(&d.lake, &project.storage),
            deferred,
        );
    }
    let mut runner =
        Runner::new(state.clone(), max_parallel).with_memory_budget(project.memory_budget);
    let bar = show_progress.then(|| Arc::new(progress::Progress::new()));
    if let Some(b) = &bar {
        runner = runner.with_observer(b.clone());
    }
    let summary = runner
        .run(Arc::new(EngineExecutor::new(engine)), tasks, options)
        .await;
    if let Some(b) = bar {
        b.finish();
    }
    summary
}

/// `strata backfill`: previews, then runs, every missing or failed interval.
pub(crate) async fn backfill(
    dir: &std::path::Path,
    select: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    parallel: Option<usize>,
    dry_run: bool,
) -> Result<(), Failure> {
    let (project, graph) = crate::load(dir)?;
    let state = StateStore::open(&project.state).await.map_err(input)?;
    let plan = crate::control::prepare_backfill(&project, &graph, &state, &select, start, end)
        .await
        .map_err(input)?;
    print_plan(&plan, start, end);
    let to_run = crate::control::intervals_to_run(&plan);
    if dry_run {
        println!("dry run: nothing was run");
        return Ok(());
    }
    if to_run == 0 {
        println!("nothing to backfill: every interval in the range is done");
        return Ok(());
    }
    crate::probe_cluster(&project, &graph, &state).await?;
    let parallel = parallel.unwrap_or(project.max_parallel).max(1);
    let (project, graph) = (Arc::new(project), Arc::new(graph));
    let summary = execute(
        &project,
        &graph,
        &state,
        plan.tasks,
        RunOptions {
            selection: select,
            trigger: Some("backfill".into()),
            interval: Some((start, end)),
            ..Default::default()
        },
        parallel,
        true,
        vec![],
    )
    .await
    .map_err(input)?;
    print_backfill_summary(&summary);
    let not_passed: Vec<_> = state
        .check_results(&summary.run_id)
        .await
        .map_err(input)?
        .into_iter()
        .filter(|c| c.status != "pass")
        .collect();
    if !not_passed.is_empty() {
        println!("checks that did not pass:");
        crate::output::print_checks(&not_passed, crate::Format::Table);
    }
    crate::output::print_failures(&summary);
    if summary.ok() {
        Ok(())
    } else {
        eprintln!("\nrun the same backfill again to retry only the failed intervals");
        Err(Failure::Failed)
    }
}

fn print_plan(plan: &BackfillPlan, start: DateTime<Utc>, end: DateTime<Utc>) {
    println!("backfill [{}, {}):", rfc3339(start), rfc3339(end));
    let mut t = table(&[
        "table",
        "grain",
        "intervals",
        "done",
        "to run",
        "failed before",
        "first to run",
        "last to run",
    ]);
    for m in &plan.models {
        let (first, last) = match (m.to_run.first(), m.to_run.last()) {
            (Some(a), Some(b)) if m.grain.is_some() => (rfc3339(a.start), rfc3339(b.start)),
            _ => ("-".into(), "-".into()),
        };
        t.add_row(vec![
            comfy_table::Cell::new(&m.model),
            comfy_table::Cell::new(m.grain.map(|g| g.as_str()).unwrap_or("(whole table)")),
            right(m.total),
            right(m.done),
            right(m.to_run.len()),
            right(m.failed),
            comfy_table::Cell::new(first),
            comfy_table::Cell::new(last),
        ]);
    }
    println!("{t}");
}

/// Per table: how its tasks ended (a backfill has one task per interval).
fn print_backfill_summary(s: &RunSummary) {
    let mut by: std::collections::BTreeMap<&str, [i64; 5]> = Default::default();
    for t in &s.tasks {
        let table = t.task.split('[').next().unwrap_or(&t.task);
        let e = by.entry(table).or_default();
        match t.status.as_str() {
            "success" => e[0] += 1,
            "skipped" => e[1] += 1,
            "failed" => e[2] += 1,
            _ => e[3] += 1,
        }
        e[4] += t.rows_written;
    }
    let mut t = table(&[
        "table",
        "succeeded",
        "skipped",
        "failed",
        "not run",
        "rows written",
    ]);
    for (name, c) in by {
        t.add_row(vec![
            comfy_table::Cell::new(name),
            right(c[0]),
            right(c[1]),
            right(c[2]),
            right(c[3]),
            right(c[4]),
        ]);
    }
    println!("{t}");
    println!(
        "run {}: {} in {:.2}s — {} tasks",
        s.run_id,
        s.status,
        s.duration.as_secs_f64(),
        s.tasks.len()
    );
}

/// Runs what schedules ask for in this process.
struct CliLauncher {
    project: Arc<Project>,
    graph: Arc<Graph>,
    state: StateStore,
}

#[async_trait::async_trait]
impl Launcher for CliLauncher {
    async fn launch(&self, req: &RunRequest) -> Result<(String, bool), String> {
        let selected = self.graph.select(&req.select).map_err(|e| e.to_string())?;
        let tasks = strata_runtime::plan(
            &self.project,
            &self.graph,
            &selected,
            req.interval,
            Utc::now(),
        );
        let options = RunOptions {
            selection: req.select.clone(),
            trigger: Some(req.trigger.clone()),
            interval: req.interval,
            ..Default::default()
        };
        // Runs of one project take turns: wait while another holds the lock.
        let mut waited = 0u64;
        loop {
            match execute(
                &self.project,
                &self.graph,
                &self.state,
                tasks.clone(),
                options.clone(),
                self.project.max_parallel,
                false,
                vec![],
            )
            .await
            {
                Ok(s) => {
                    print_fired_run(req, &s);
                    return Ok((s.run_id.clone(), s.ok()));
                }
                Err(strata_state::Error::Busy(why)) if waited < 6 * 3600 => {
                    if waited == 0 {
                        eprintln!("{}: waiting: {why}", req.trigger);
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    waited += 5;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    async fn new_files(&self, source: &str) -> Result<usize, String> {
        let s = self
            .project
            .sources
            .get(source)
            .ok_or_else(|| format!("unknown source {source}"))?;
        let engine = Engine::new(self.project.clone(), self.graph.clone(), self.state.clone());
        strata_engine::ingest::pending_files(&engine, s)
            .await
            .map(|f| f.len())
            .map_err(|e| e.to_string())
    }
}

fn print_fired_run(req: &RunRequest, s: &RunSummary) {
    let count = |st: &str| s.tasks.iter().filter(|t| t.status == st).count();
    let interval = req
        .interval
        .map(|(a, b)| format!(" [{}, {})", rfc3339(a), rfc3339(b)))
        .unwrap_or_default();
    println!(
        "{}{interval}: run {} {} in {:.2}s — {} succeeded, {} skipped, {} failed, {} not run",
        req.trigger,
        s.run_id,
        s.status,
        s.duration.as_secs_f64(),
        count("success"),
        count("skipped"),
        count("failed"),
        count("upstream_failed")
    );
    crate::output::print_failures(s);
}

/// `strata serve`: the scheduler, alert evaluation every `[monitoring]
/// evaluate_every`, and the HTTP endpoints (`/metrics`, `/healthz`). With
/// `once_at`, evaluates the schedules and alerts once as if it were that
/// time, runs what is due, and exits (no HTTP).
pub(crate) async fn serve(
    dir: &std::path::Path,
    once_at: Option<DateTime<Utc>>,
    http: Option<String>,
    sql: Option<String>,
) -> Result<(), Failure> {
    let (project, graph) = crate::load(dir)?;
    let state = StateStore::open(&project.state).await.map_err(input)?;
    for s in project.schedules.values() {
        graph
            .select(&s.select)
            .map_err(|e| input(format!("schedule `{}`: {e}", s.name)))?;
    }
    for r in project.alerts.values() {
        strata_runtime::monitor::alerts::rule_tables(r, &project, &graph).map_err(input)?;
    }
    let schedules: Vec<_> = project.schedules.values().cloned().collect();
    let names: Vec<_> = schedules.iter().map(|s| s.name.clone()).collect();
    let (project, graph) = (Arc::new(project), Arc::new(graph));
    let launcher = Arc::new(CliLauncher {
        project: project.clone(),
        graph: graph.clone(),
        state: state.clone(),
    });
    let who = format!("{}:{}", strata_runtime::host_name(), std::process::id());
    let scheduler = Scheduler::new(state.clone(), schedules, launcher, who);
    if let Some(at) = once_at {
        let fired = scheduler.tick(at).await.map_err(input)?;
        report(&fired, at);
        let deliveries = crate::monitor::evaluate_and_notify(&project, &graph, &state, at)
            .await
            .map_err(input)?;
        let ok = fired.iter().all(|f| matches!(f.result, Ok((_, true))))
            && deliveries.iter().all(|d| d.error.is_none());
        return if ok { Ok(()) } else { Err(Failure::Failed) };
    }
    let addr = http.unwrap_or_else(|| project.serve.http.clone());
    let sock: std::net::SocketAddr = addr
        .parse()
        .map_err(|_| input(format!("bad HTTP address `{addr}`: write IP:PORT")))?;
    let auth = strata_server::auth::api_auth(&project.serve, &sock).map_err(input)?;
    let engine = Engine::new(project.clone(), graph.clone(), state.clone());
    let sessions = strata_server::Sessions::new(engine);
    // SQL first: a bad TLS file or password stops serve before anything listens.
    let sql_server = if project.serve.users.is_empty() {
        None
    } else {
        let logins = strata_server::auth::logins(&project.serve).map_err(input)?;
        let tls = match (&project.serve.tls_cert, &project.serve.tls_key) {
            (Some(c), Some(k)) => Some((c.as_str(), k.as_str())),
            _ => None,
        };
        let server = strata_server::sql::SqlServer::new(&sessions, &logins, tls, &project.root)
            .map_err(input)?;
        let sql_addr = sql.unwrap_or_else(|| project.serve.sql.clone());
        let listener = tokio::net::TcpListener::bind(&sql_addr)
            .await
            .map_err(|e| {
                input(format!(
                    "cannot listen on {sql_addr} for SQL (set [serve] sql or --sql): {e}"
                ))
            })?;
        Some((server, listener, sql_addr))
    };
    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
        input(format!(
            "cannot listen on {addr} (set [serve] http or --http): {e}"
        ))
    })?;
    let runs = Arc::new(std::sync::Mutex::new(tokio::task::JoinSet::new()));
    let control = Arc::new(crate::control::CliControl {
        project: project.clone(),
        graph: graph.clone(),
        state: state.clone(),
        runs: runs.clone(),
        runtime: tokio::runtime::Handle::current(),
    });
    // Queries (SQL and API) run on their own threads, so a burst of clients
    // never starves the scheduler's clock or a run's commits.
    let queries = QueryRuntime::new(project.max_parallel).map_err(input)?;
    let app = strata_server::router(
        strata_server::AppState::with_sessions(sessions, auth.clone()).with_control(control),
    );
    // Owned by this function: dropping the set (however serve ends) stops the servers.
    let mut server: tokio::task::JoinSet<(&str, std::io::Result<()>)> = tokio::task::JoinSet::new();
    server.spawn_on(
        async move { ("HTTP", axum::serve(listener, app).await) },
        queries.handle(),
    );
    let open = matches!(auth, strata_server::ApiAuth::OpenLoopback);
    eprintln!(
        "dashboard: http://{addr}/   API: http://{addr}/api/  (OpenAPI: /api/openapi.json{})",
        if open {
            "; no [serve.tokens]: open on loopback only"
        } else {
            ""
        }
    );
    eprintln!("metrics: http://{addr}/metrics, http://{addr}/healthz");
    match sql_server {
        Some((sql_server, listener, sql_addr)) => {
            eprintln!(
                "sql: postgresql://{sql_addr} ({} logins{}; read-only)",
                project.serve.users.len(),
                if sql_server.tls() { ", TLS" } else { "" }
            );
            server.spawn_on(
                async move { ("SQL", sql_server.serve(listener).await) },
                queries.handle(),
            );
        }
        None => eprintln!("sql: off (add [serve.users.NAME] to strata.toml to serve SQL)"),
    }
    if names.is_empty() {
        eprintln!("note: strata.toml has no [schedules]; nothing will run (Ctrl-C to stop)");
    } else {
        eprintln!("serving schedules: {} (Ctrl-C to stop)", names.join(", "));
    }
    let every = chrono::Duration::seconds(project.monitoring.evaluate_every_seconds.max(1));
    let mut next_eval = Utc::now();
    loop {
        let now = Utc::now();
        let fired = scheduler.tick(now).await.map_err(input)?;
        report_quiet(&fired);
        if !fired.is_empty() || now >= next_eval {
            if let Err(e) = crate::monitor::evaluate_and_notify(&project, &graph, &state, now).await
            {
                eprintln!("warning: alerts were not evaluated: {e}");
            }
            next_eval = now + every;
        }
        let wake = scheduler.next_wake(Utc::now()).min(next_eval);
        let wait = (wake - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            Some(r) = server.join_next() => {
                return Err(input(match r {
                    Ok((what, Ok(()))) => format!("the {what} server stopped"),
                    Ok((what, Err(e))) => format!("the {what} server stopped: {e}"),
                    Err(e) => format!("a server stopped: {e}"),
                }));
            }
            _ = tokio::signal::ctrl_c() => {
                eprintln!("stopping");
                return Ok(());
            }
        }
    }
}

/// The threads `strata serve` answers queries on, apart from the scheduler's.
struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl QueryRuntime {
    fn new(threads: usize) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(2))
            .thread_name("strata-query")
            .enable_all()
            .build()?;
        Ok(Self(Some(rt)))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        match &self.0 {
            Some(rt) => rt.handle(),
            None => unreachable!("the runtime is only taken on drop"),
        }
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        // Dropping a runtime inside another one would block; let it wind down.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Reports scheduler errors only (a long-running server stays quiet when idle).
fn report_quiet(fired: &[Fired]) {
    for f in fired {
        if let Err(e) = &f.result {
            eprintln!("{} at {}: could not run: {e}", f.schedule, rfc3339(f.at));
        }
    }
}

fn report(fired: &[Fired], at: DateTime<Utc>) {
    if fired.is_empty() {
        println!("{}: nothing due", rfc3339(at));
    }
    for f in fired {
        if let Err(e) = &f.result {
            eprintln!("{} at {}: could not run: {e}", f.schedule, rfc3339(f.at));
        }
    }
}
