//! The `strata` command line: parses arguments, loads the project, hands the
//! work to the runtime and engine, and renders progress, tables and errors.
//! Exit codes: 0 ok, 1 a run or check failed, 2 bad input.

mod control;
mod docs;
mod lineage;
mod logs;
mod maintain;
mod monitor;
mod output;
mod plan;
mod progress;
mod schedule;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use strata_engine::Engine;
use strata_graph::Graph;
use strata_project::{Errors, Project};
use strata_state::StateStore;

/// Strata: ingest, transform, check and serve a bronze → silver → gold lakehouse.
#[derive(Parser)]
#[command(name = "strata", version, about)]
struct Cli {
    /// The project folder (holding strata.toml).
    #[arg(long, global = true, default_value = ".", env = "STRATA_PROJECT")]
    project: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// The target (`[targets.NAME]`) whose lake, state store and engine to use
    /// (default: `[project] target`, else the `[project]` settings).
    #[arg(long, global = true, env = "STRATA_TARGET")]
    target: Option<String>,
    /// Run on this engine instead of the project's `engine`: `local` or
    /// `ballista://HOST:PORT` (a Ballista scheduler).
    #[arg(long, global = true, env = "STRATA_ENGINE")]
    engine: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Output format of tables.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// An aligned table.
    Table,
    /// CSV with a header.
    Csv,
    /// One JSON object per row.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Create a project (with --example shop: a complete example with data).
    Init {
        /// Folder to create.
        dir: PathBuf,
        /// Example to write.
        #[arg(long, value_parser = ["shop"])]
        example: Option<String>,
        /// Size of the example's data (1 ≈ 100k orders; 100 ≈ 10M).
        #[arg(long, default_value_t = 1)]
        scale: u32,
    },
    /// Parse and check the project (config, SQL, references, cycles) without touching data.
    Validate,
    /// What a run would change against what was last deployed: added, changed,
    /// affected and removed tables, column changes marked breaking, what rebuilds.
    Plan {
        /// `table` (for people) or `json` (for CI bots).
        #[arg(long, value_parser = ["table", "json"], default_value = "table")]
        format: String,
        /// Exit 1 when a change breaks readers.
        #[arg(long)]
        fail_on_breaking: bool,
    },
    /// Table lineage, or with --columns (or a column named: TABLE.COLUMN)
    /// column lineage through every layer.
    Lineage {
        /// A table (`gold.daily_revenue`) or a column (`bronze.orders.amount`).
        #[arg(value_name = "TABLE_OR_COLUMN")]
        name: String,
        /// Every column of the table, each with its origins.
        #[arg(long)]
        columns: bool,
        /// Show what depends on it instead of what it comes from.
        #[arg(long)]
        downstream: bool,
        /// `table` (text) or `json`.
        #[arg(long, value_parser = ["table", "json"], default_value = "table")]
        format: String,
    },
    /// Run the DAG once.
    Run {
        /// Which tables: NAME, +NAME, NAME+, layer:L, tag:T, comma-separated.
        #[arg(long, short)]
        select: Option<String>,
        /// Rebuild incremental and scd2 models from scratch.
        #[arg(long)]
        full_refresh: bool,
        /// Start of the run's data interval (`:start` in SQL): a date or RFC 3339 time, UTC.
        #[arg(long, requires = "end")]
        start: Option<String>,
        /// End of the run's data interval (`:end`, exclusive).
        #[arg(long, requires = "start")]
        end: Option<String>,
        /// Finish an interrupted or failed run: only its unfinished tasks run
        /// (default: the latest such run).
        #[arg(long, value_name = "RUN_ID", num_args = 0..=1, default_missing_value = "", conflicts_with_all = ["select", "full_refresh", "start", "end"])]
        resume: Option<String>,
    },
    /// Run every missing or failed interval of the selected partitioned
    /// (replace_range) models in a range, N at a time; a repeat runs only what
    /// is still missing or failed.
    Backfill {
        /// First day or time of the range (a date or RFC 3339 time, UTC).
        #[arg(long)]
        start: String,
        /// End of the range (exclusive).
        #[arg(long)]
        end: String,
        /// Which tables (as for `run`; default everything).
        #[arg(long, short)]
        select: Option<String>,
        /// Intervals run at once (default: `max_parallel`).
        #[arg(long)]
        parallel: Option<usize>,
        /// Only show what would run.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run the scheduler (cron schedules and file sensors from strata.toml), the
    /// HTTP API and dashboard, and the Postgres-wire SQL endpoint.
    Serve {
        /// Evaluate the schedules and alerts once, as if it were this time (a
        /// date or RFC 3339 time), run what is due, and exit.
        #[arg(long)]
        once_at: Option<String>,
        /// The HTTP address of the API, dashboard, /metrics and /healthz
        /// (default: `[serve] http`, else 127.0.0.1:8080).
        #[arg(long)]
        http: Option<String>,
        /// The Postgres-wire SQL address (default: `[serve] sql`, else 127.0.0.1:5433).
        #[arg(long)]
        sql: Option<String>,
    },
    /// Run the unit tests under tests/ (in memory; the lake is not touched).
    Test {
        /// Only the tests of these models (as for `run`).
        #[arg(long, short)]
        select: Option<String>,
    },
    /// Run data checks on the current tables.
    Check {
        /// Which models (as for `run`).
        #[arg(long, short)]
        select: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Sliced analysis: a metric by one or more columns, to validate a table with its users.
    Slice {
        /// The table (`gold.daily_revenue`).
        table: String,
        /// Columns to slice by, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        by: Vec<String>,
        /// Aggregate expressions (repeatable), e.g. "sum(revenue)"; default count(*).
        #[arg(long)]
        metric: Vec<String>,
        /// A filter, e.g. "region <> 'unknown'".
        #[arg(long = "where")]
        filter: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Query the lake with SQL.
    Sql {
        /// The query.
        query: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// One screen of health: the last run, and per table its last build, version and checks.
    Status,
    /// Write the data catalog as a static site (index.html + catalog.json).
    Docs {
        /// Folder to write into (default: target/docs in the project).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run history, one run's tasks (and with --log its log), or with
    /// --costs the models ranked by what they cost.
    Runs {
        /// Show this run's tasks.
        run_id: Option<String>,
        /// How many runs.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Rank models by the CPU and wall time their tasks used.
        #[arg(long, conflicts_with = "run_id")]
        costs: bool,
        /// With --costs: since when (a duration back from now such as 7d or
        /// 24h, or a date). Default 7d.
        #[arg(long, requires = "costs", default_value = "7d")]
        since: String,
        /// With RUN_ID: print the run's log (JSON lines) instead of its tasks.
        #[arg(long, requires = "run_id")]
        log: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Alert rules and incidents; silence a rule; evaluate alerts now.
    Alerts {
        #[command(subcommand)]
        command: Option<AlertsCommand>,
    },
    /// Work with the example project.
    Example {
        #[command(subcommand)]
        command: ExampleCommand,
    },
    /// Compact each table's small files into larger ones (Delta OPTIMIZE).
    /// No row changes: models reading the tables see nothing new.
    Optimize {
        /// Which tables (as for `run`; default: all of them).
        #[arg(long, short)]
        select: Option<String>,
        /// Write files of about this size, e.g. 128MB (default: the table's
        /// `delta.targetFileSize`, else 100 MiB).
        #[arg(long)]
        target_size: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Delete data files that no version within the retention uses (Delta
    /// VACUUM): files OPTIMIZE and rewrites replaced, and files failed writes
    /// left. Time travel to older versions stops working.
    Vacuum {
        /// Which tables (as for `run`; default: all of them).
        #[arg(long, short)]
        select: Option<String>,
        /// Keep files removed less than this many hours ago (default: each
        /// table's `delta.deletedFileRetentionDuration`, 7 days).
        #[arg(long)]
        retain_hours: Option<u64>,
        /// Allow a retention shorter than the table's own.
        #[arg(long, requires = "retain_hours")]
        unsafe_retention: bool,
        /// List the files that would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Start a Ballista scheduler for `engine = "ballista://HOST:PORT"`.
    Scheduler {
        /// Address to listen on (0.0.0.0: every interface).
        #[arg(long, default_value = "127.0.0.1")]
        bind_host: String,
        /// The port clients and executors connect to.
        #[arg(long, default_value_t = 50050)]
        bind_port: u16,
        /// The host name executors and clients reach this scheduler by.
        #[arg(long, default_value = "localhost")]
        external_host: String,
        /// An object-store option for the lake, KEY=VALUE; repeatable. The
        /// scheduler opens the lake's stores to decode scans, reading nothing.
        #[arg(long = "storage-option", value_name = "KEY=VALUE")]
        storage_options: Vec<String>,
    },
    /// Start a Ballista executor that reads the lake and runs the scheduler's tasks.
    Executor {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        bind_host: String,
        /// The host name the scheduler and other executors reach this one by
        /// (default: the bind address).
        #[arg(long)]
        external_host: Option<String>,
        /// The Arrow Flight port shuffle data is served from.
        #[arg(long, default_value_t = 50051)]
        bind_port: u16,
        /// The gRPC port the scheduler pushes tasks to.
        #[arg(long, default_value_t = 50052)]
        bind_grpc_port: u16,
        /// The scheduler's host.
        #[arg(long, default_value = "localhost")]
        scheduler_host: String,
        /// The scheduler's port.
        #[arg(long, default_value_t = 50050)]
        scheduler_port: u16,
        /// Tasks run at once (default: the number of cores).
        #[arg(long)]
        concurrent_tasks: Option<usize>,
        /// Folder for shuffle files (default: a temporary folder).
        #[arg(long)]
        work_dir: Option<String>,
        /// An object-store option for reading the lake, KEY=VALUE
        /// (`aws_endpoint=http://…`, `aws_allow_http=true`, …); repeatable.
        /// Credentials are also taken from the environment (AWS_*, AZURE_*, GOOGLE_*).
        #[arg(long = "storage-option", value_name = "KEY=VALUE")]
        storage_options: Vec<String>,
    },
}

/// `strata alerts …`.
#[derive(Subcommand)]
pub(crate) enum AlertsCommand {
    /// The rules, and the latest incidents (firing, resolved, events).
    List {
        /// How many incidents.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Hold back a rule's notifications for a while (incidents are still recorded).
    Silence {
        /// The rule (`[alerts.NAME]`).
        rule: String,
        /// How long: 30m, 2h, 1d.
        #[arg(long = "for", value_name = "DURATION")]
        r#for: String,
        /// Why (shown in `strata alerts`).
        #[arg(long)]
        reason: Option<String>,
    },
    /// End a rule's silence now.
    Unsilence {
        /// The rule.
        rule: String,
    },
    /// Evaluate health and send what is due now (or as if at --at), as
    /// `strata serve` does every minute; for cron or CI.
    Check {
        /// Evaluate as if it were this time (a date or RFC 3339 time).
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(Subcommand)]
enum ExampleCommand {
    /// Append the next day's files to the example project.
    NextDay {
        /// Multiply the new day's orders (e.g. 10 for a day that volume
        /// anomaly detection should catch).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
        orders_factor: u32,
    },
}

/// A failure at the CLI edge, with its exit code.
enum Failure {
    /// Bad input: exit 2.
    Input(miette::Report),
    /// A run or check failed: exit 1 (details already printed).
    Failed,
}

impl From<plan::PlanError> for Failure {
    fn from(e: plan::PlanError) -> Self {
        match e {
            plan::PlanError::Project(e) => e.into(),
            plan::PlanError::State(e) => input(e),
        }
    }
}

impl From<Errors> for Failure {
    fn from(e: Errors) -> Self {
        for err in &e.0 {
            eprintln!("{:?}", miette::Report::new(err.clone()));
        }
        let n = e.0.len();
        Failure::Input(miette::miette!(
            "{n} problem{} found",
            if n == 1 { "" } else { "s" }
        ))
    }
}

fn input(msg: impl std::fmt::Display) -> Failure {
    Failure::Input(miette::miette!("{msg}"))
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    let _ = TARGET.set(cli.target.clone());
    let _ = ENGINE.set(cli.engine.clone());
    init_logging(cli.log_format, &cli.project);
    // Keep each message on one line so `file:line:col: message` can be grepped.
    let _ = miette::set_hook(Box::new(|_| {
        Box::new(miette::MietteHandlerOpts::new().wrap_lines(false).build())
    }));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Deep plans are walked recursively (planning, and encoding them for a cluster).
        .thread_stack_size(32 * 1024 * 1024)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Failed) => ExitCode::from(1),
        // The reader of the output went away (`| head`): nothing to report.
        Err(Failure::Input(report)) if format!("{report}").contains("Broken pipe") => {
            ExitCode::SUCCESS
        }
        Err(Failure::Input(report)) => {
            eprintln!("{report:?}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat, project: &std::path::Path) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // delta_kernel logs a harmless ERROR on a table's first write; users never need it.
    let quiet = "delta_kernel=off,buoyant_kernel=off,deltalake_core::operations::merge=error,deltalake_core::operations::vacuum=error";
    let default = match format {
        LogFormat::Text => format!("warn,{quiet}"),
        LogFormat::Json => format!("warn,strata_runtime=info,strata_engine=info,{quiet}"),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&default));
    let stderr = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => logs::JsonLines::new(logs::Sink::Stderr)
            .with_filter(filter)
            .boxed(),
    };
    // Every run's log is kept, whatever is shown on stderr.
    let kept = logs::JsonLines::new(logs::Sink::RunFiles(logs::log_dir(project))).with_filter(
        tracing_subscriber::EnvFilter::new(format!(
            "warn,strata_runtime=info,strata_engine=info,{quiet}"
        )),
    );
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(kept)
        .try_init();
}

async fn dispatch(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Init {
            dir,
            example,
            scale,
        } => init(&dir, example.as_deref(), scale),
        Command::Validate => {
            let (project, graph) = load(&cli.project)?;
            for s in project.schedules.values() {
                graph
                    .select(&s.select)
                    .map_err(|e| input(format!("strata.toml: schedule `{}`: {e}", s.name)))?;
            }
            let check = strata_engine::validate::check_plans(&project, &graph).await;
            if !check.errors.is_empty() {
                return Err(check.errors.into());
            }
            for (model, input) in &check.unknown {
                eprintln!(
                    "note: {model} was not planned: the columns of {input} are unknown until it is ingested (declare `columns` to check it now)"
                );
            }
            println!(
                "ok: {} sources, {} models ({} planned), {} tables in the DAG",
                project.sources.len(),
                project.models.len(),
                check.planned,
                graph.order().len()
            );
            Ok(())
        }
        Command::Plan {
            format,
            fail_on_breaking,
        } => {
            let (project, graph) = load(&cli.project)?;
            let state = StateStore::open(&project.state).await.map_err(input)?;
            let plan = plan::compute(&project, &graph, &state).await?;
            plan::print(&plan, project.target.as_deref(), format == "json");
            if fail_on_breaking && plan.breaking() {
                return Err(Failure::Failed);
            }
            Ok(())
        }
        Command::Lineage {
            name,
            columns,
            downstream,
            format,
        } => {
            let (project, graph) = load(&cli.project)?;
            let req = lineage::Request {
                target: &name,
                columns,
                downstream,
                json: format == "json",
            };
            let text = lineage::render(&project, &graph, &req)
                .await
                .map_err(input)?;
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
            Ok(())
        }
        Command::Run {
            select,
            full_refresh,
            start,
            end,
            resume,
        } => {
            let interval = match (start, end) {
                (Some(s), Some(e)) => {
                    let (s, e) = (
                        parse_time(&s).map_err(input)?,
                        parse_time(&e).map_err(input)?,
                    );
                    if s >= e {
                        return Err(input("--start must be before --end"));
                    }
                    Some((s, e))
                }
                _ => None,
            };
            run(
                &cli.project,
                select.unwrap_or_default(),
                full_refresh,
                interval,
                resume,
            )
            .await
        }
        Command::Backfill {
            start,
            end,
            select,
            parallel,
            dry_run,
        } => {
            let (s, e) = (
                parse_time(&start).map_err(input)?,
                parse_time(&end).map_err(input)?,
            );
            if s >= e {
                return Err(input("--start must be before --end"));
            }
            schedule::backfill(
                &cli.project,
                select.unwrap_or_default(),
                s,
                e,
                parallel,
                dry_run,
            )
            .await
        }
        Command::Serve { once_at, http, sql } => {
            let at = match once_at {
                Some(t) => Some(parse_time(&t).map_err(input)?),
                None => None,
            };
            schedule::serve(&cli.project, at, http, sql).await
        }
        Command::Alerts { command } => {
            let (project, graph) = load(&cli.project)?;
            let state = StateStore::open(&project.state).await.map_err(input)?;
            let cmd = command.unwrap_or(AlertsCommand::List {
                limit: 20,
                format: Format::Table,
            });
            monitor::alerts(&project, &graph, &state, cmd).await
        }
        Command::Test { select } => {
            let (project, graph) = load(&cli.project)?;
            let selected = match select {
                Some(s) => Some(graph.select(&s).map_err(input)?),
                None => None,
            };
            let outcomes =
                strata_engine::unit::run_tests(&project, &graph, selected.as_ref()).await;
            if outcomes.is_empty() {
                println!("no unit tests (add tests/*.toml; see README)");
                return Ok(());
            }
            output::print_tests(&outcomes);
            if outcomes.iter().all(|o| o.passed) {
                Ok(())
            } else {
                Err(Failure::Failed)
            }
        }
        Command::Check { select, format } => {
            check(&cli.project, select.unwrap_or_default(), format).await
        }
        Command::Slice {
            table,
            by,
            metric,
            filter,
            format,
        } => {
            let engine = engine(&cli.project).await?;
            let query = strata_server::query::slice_sql(&table, &by, &metric, filter.as_deref())
                .map_err(input)?;
            let (schema, batches) = engine.sql(&query).await.map_err(input)?;
            output::print_batches(&schema, &batches, format).map_err(input)
        }
        Command::Sql { query, format } => {
            let engine = engine(&cli.project).await?;
            let (schema, batches) = engine.sql(&query).await.map_err(input)?;
            output::print_batches(&schema, &batches, format).map_err(input)
        }
        Command::Status => {
            let (project, graph) = load(&cli.project)?;
            let state = StateStore::open(&project.state).await.map_err(input)?;
            status::print(&project, &graph, &state).await.map_err(input)
        }
        Command::Docs { out } => {
            let out = out.unwrap_or_else(|| cli.project.join("target/docs"));
            let engine = engine(&cli.project).await?;
            let catalog = strata_engine::catalog::catalog(&engine)
                .await
                .map_err(input)?;
            docs::write_site(&catalog, &out).map_err(input)?;
            println!(
                "wrote the catalog of {} tables and {} data products to {}",
                catalog.tables.len(),
                catalog.products.len(),
                out.join("index.html").display()
            );
            Ok(())
        }
        Command::Runs {
            run_id,
            limit,
            costs,
            since,
            log,
            format,
        } => {
            let (project, _) = load(&cli.project)?;
            let state = StateStore::open(&project.state).await.map_err(input)?;
            if costs {
                let since = match strata_project::check::parse_duration(&since) {
                    Some(s) => chrono::Utc::now() - chrono::Duration::seconds(s),
                    None => parse_time(&since)
                        .map_err(|e| input(format!("--since: {e}; or a duration such as 7d")))?,
                };
                return monitor::costs(&state, since, format).await;
            }
            if log && let Some(id) = &run_id {
                return logs::print_run_log(&project, id).map_err(input);
            }
            match run_id {
                Some(id) => {
                    let tasks = state.tasks(&id).await.map_err(input)?;
                    if tasks.is_empty() && state.run(&id).await.map_err(input)?.is_none() {
                        return Err(input(format!("no run `{id}`; `strata runs` lists them")));
                    }
                    output::print_tasks(&tasks, format);
                }
                None => output::print_runs(&state.runs(limit).await.map_err(input)?, format),
            }
            Ok(())
        }
        Command::Optimize {
            select,
            target_size,
            format,
        } => {
            let mut optimize = strata_engine::maintain::Optimize::new();
            if let Some(t) = target_size {
                let bytes = strata_project::parse_size(&t).map_err(|_| {
                    input(format!(
                        "--target-size `{t}` is not a size such as 128MB or 1GiB"
                    ))
                })?;
                optimize = optimize.with_target_size(bytes as u64);
            }
            let engine = engine(&cli.project).await?;
            let tables = maintained(&engine, select.as_deref())?;
            let bar = maintain::bar(tables.len(), "optimizing");
            let done = optimize
                .execute(&engine, &tables, |t| maintain::step(&bar, t))
                .await;
            bar.finish_and_clear();
            maintain::print_compactions(&done.map_err(input)?, format);
            Ok(())
        }
        Command::Vacuum {
            select,
            retain_hours,
            unsafe_retention,
            dry_run,
            format,
        } => {
            let mut vacuum = strata_engine::maintain::Vacuum::new();
            if let Some(h) = retain_hours {
                vacuum = vacuum.with_retention_hours(h);
            }
            if unsafe_retention {
                vacuum = vacuum.unsafe_retention();
            }
            if dry_run {
                vacuum = vacuum.dry_run();
            }
            let engine = engine(&cli.project).await?;
            let tables = maintained(&engine, select.as_deref())?;
            let bar = maintain::bar(tables.len(), "vacuuming");
            let done = vacuum
                .execute(&engine, &tables, |t| maintain::step(&bar, t))
                .await;
            bar.finish_and_clear();
            maintain::print_cleanups(&done.map_err(input)?, format);
            Ok(())
        }
        Command::Scheduler {
            bind_host,
            bind_port,
            external_host,
            storage_options,
        } => {
            let storage_options = key_values(&storage_options)?;
            eprintln!(
                "strata scheduler: listening on {bind_host}:{bind_port} (engine = \"ballista://{external_host}:{bind_port}\")"
            );
            strata_engine::cluster::process::run_scheduler(
                strata_engine::cluster::process::SchedulerOptions {
                    bind_host,
                    port: bind_port,
                    external_host,
                    storage_options,
                },
            )
            .await
            .map_err(input)
        }
        Command::Executor {
            bind_host,
            external_host,
            bind_port,
            bind_grpc_port,
            scheduler_host,
            scheduler_port,
            concurrent_tasks,
            work_dir,
            storage_options,
        } => {
            let storage_options = key_values(&storage_options)?;
            eprintln!(
                "strata executor: flight {bind_host}:{bind_port}, scheduler {scheduler_host}:{scheduler_port}"
            );
            strata_engine::cluster::process::run_executor(
                strata_engine::cluster::process::ExecutorOptions {
                    bind_host,
                    external_host,
                    port: bind_port,
                    grpc_port: bind_grpc_port,
                    scheduler_host,
                    scheduler_port,
                    concurrent_tasks,
                    work_dir,
                    storage_options,
                },
            )
            .await
            .map_err(input)
        }
        Command::Example {
            command: ExampleCommand::NextDay { orders_factor },
        } => {
            let s = strata_engine::example::next_day_with(&cli.project, orders_factor)
                .map_err(input)?;
            let days: Vec<String> = s.days.iter().map(|d| d.to_string()).collect();
            println!(
                "wrote {} files ({} orders) for {}",
                s.files_written,
                s.orders,
                days.join(", ")
            );
            println!("next: strata run --project {}", cli.project.display());
            Ok(())
        }
    }
}

fn init(dir: &std::path::Path, example: Option<&str>, scale: u32) -> Result<(), Failure> {
    match example {
        Some(_) => {
            if scale == 0 {
                return Err(input("--scale must be at least 1"));
            }
            let s = strata_engine::example::init_shop(dir, scale).map_err(input)?;
            println!(
                "created the shop example in {}: {} files, {} orders, {} customers, {} products",
                dir.display(),
                s.files_written,
                s.orders,
                s.customers,
                s.products
            );
        }
        None => scaffold(dir).map_err(input)?,
    }
    println!("next: strata run --project {}", dir.display());
    Ok(())
}

/// An empty project: strata.toml and the layer folders.
fn scaffold(dir: &std::path::Path) -> Result<(), String> {
    let cfg = dir.join(strata_project::CONFIG_FILE);
    if cfg.exists() {
        return Err(format!("{} already exists", cfg.display()));
    }
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| {
            n.to_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        })
        .unwrap_or_else(|| "project".into());
    for sub in ["models/bronze", "models/silver", "models/gold", "data"] {
        std::fs::create_dir_all(dir.join(sub))
            .map_err(|e| format!("cannot create {}: {e}", dir.join(sub).display()))?;
    }
    std::fs::write(&cfg, format!("[project]\nname = \"{name}\"\n\n# [sources.orders]\n# format = \"csv\"\n# path = \"data/orders/*.csv\"\n"))
        .map_err(|e| format!("cannot write {}: {e}", cfg.display()))?;
    std::fs::write(dir.join(".gitignore"), "lake/\n.strata/\n").map_err(|e| e.to_string())?;
    println!("created an empty project in {}", dir.display());
    Ok(())
}

/// The target given by `--target` (set once at start).
static TARGET: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Before a run on a cluster reads anything: the cluster answers and its
/// executors reach the lake.
pub(crate) async fn probe_cluster(
    project: &Project,
    graph: &Graph,
    state: &StateStore,
) -> Result<(), Failure> {
    if project.engine == "local" {
        return Ok(());
    }
    let e = Engine::new(
        Arc::new(project.clone()),
        Arc::new(graph.clone()),
        state.clone(),
    );
    strata_engine::cluster::probe(&e).await.map_err(input)?;
    eprintln!("engine: {} (its executors read the lake)", project.engine);
    Ok(())
}

/// `--storage-option KEY=VALUE` flags as pairs.
fn key_values(flags: &[String]) -> Result<Vec<(String, String)>, Failure> {
    flags
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| input(format!("--storage-option `{kv}`: write KEY=VALUE")))
        })
        .collect()
}

/// The engine given by `--engine` (set once at start).
static ENGINE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

fn load(dir: &std::path::Path) -> Result<(Project, Graph), Failure> {
    let target = TARGET.get().and_then(|t| t.as_deref());
    let mut project = Project::load_target(dir, target)?;
    if let Some(engine) = ENGINE.get().and_then(|e| e.as_deref()) {
        if engine != "local" {
            strata_project::check_engine(engine).map_err(|e| input(format!("--engine: {e}")))?;
        }
        project.engine = engine.to_string();
    }
    strata_engine::storage::check_options(&project.storage)
        .map_err(|e| input(format!("{}: {e}", dir.join("strata.toml").display())))?;
    let graph = Graph::build(&project)?;
    Ok((project, graph))
}

async fn engine(dir: &std::path::Path) -> Result<Engine, Failure> {
    let (project, graph) = load(dir)?;
    let state = StateStore::open(&project.state).await.map_err(input)?;
    Ok(Engine::new(Arc::new(project), Arc::new(graph), state))
}

/// The Delta tables of the selected models and sources (all without `select`).
/// A reader that stops early (`strata runs | head -1`) closes the pipe, and
/// the next line printed fails: end quietly then, as Unix tools do, instead
/// of reporting a crash.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            // A panic hook cannot return an error to main: it ends here.
            #[allow(clippy::disallowed_methods)]
            std::process::exit(0);
        }
        default(info);
    }));
}

fn maintained(engine: &Engine, select: Option<&str>) -> Result<Vec<String>, Failure> {
    let selected = match select {
        Some(s) => Some(engine.graph().select(s).map_err(input)?),
        None => None,
    };
    Ok(strata_engine::maintain::tables_of(
        engine.project(),
        engine.graph(),
        selected.as_ref(),
    ))
}

/// For a target that defers to another: the tables unchanged against the
/// other target's deployment, read from its lake instead of being built.
async fn deferred_tables(project: &Project, graph: &Graph) -> Result<Vec<String>, Failure> {
    let Some(d) = &project.defer else {
        return Ok(vec![]);
    };
    if let Some(path) = d.state.strip_prefix("sqlite://")
        && !std::path::Path::new(path).exists()
    {
        return Err(input(format!(
            "target {} has deployed nothing yet (no state store at {path}); run it first, or remove `defer`",
            d.target
        )));
    }
    let other = StateStore::open(&d.state).await.map_err(input)?;
    // Plan over the other target's tables: its lake holds what is deferred.
    let mut seen_from = project.clone();
    seen_from.lake = d.lake.clone();
    let plan = plan::compute(&seen_from, graph, &other).await?;
    let deferred: Vec<String> = plan
        .tables
        .iter()
        .filter(|t| t.change == strata_graph::plan::Change::Unchanged)
        .map(|t| t.name.clone())
        .collect();
    let built = plan
        .tables
        .iter()
        .filter(|t| {
            t.change != strata_graph::plan::Change::Unchanged
                && t.change != strata_graph::plan::Change::Removed
        })
        .count();
    eprintln!(
        "deferring to target {}: {} unchanged tables are read from its lake ({}), {} built here",
        d.target,
        deferred.len(),
        d.lake,
        built
    );
    Ok(deferred)
}

/// A date (`2024-01-31`, midnight UTC) or an RFC 3339 time.
fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    strata_project::parse_time(s)
        .ok_or_else(|| format!("`{s}` is not a date (YYYY-MM-DD) or an RFC 3339 time"))
}

async fn run(
    dir: &std::path::Path,
    select: String,
    full_refresh: bool,
    interval: Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>,
    resume: Option<String>,
) -> Result<(), Failure> {
    let (project, graph) = load(dir)?;
    let state = StateStore::open(&project.state).await.map_err(input)?;
    probe_cluster(&project, &graph, &state).await?;
    let prepared = control::prepare_run(
        &project,
        &graph,
        &state,
        select,
        full_refresh,
        interval,
        resume,
    )
    .await
    .map_err(input)?;
    if let Some((id, done)) = &prepared.resumed {
        eprintln!("resuming run {id} ({done} tasks already done)");
    }
    let full_run = prepared.options.selection.is_empty() && prepared.resumed.is_none();
    let mut prepared = prepared;
    let deferred = deferred_tables(&project, &graph).await?;
    if !deferred.is_empty() {
        prepared.tasks.retain(|t| !deferred.contains(&t.table));
    }
    let max_parallel = project.max_parallel;
    let products = product_definitions(&project);
    let (project_arc, graph_arc) = (Arc::new(project), Arc::new(graph));
    let summary = schedule::execute(
        &project_arc,
        &graph_arc,
        &state,
        prepared.tasks,
        prepared.options,
        max_parallel,
        true,
        deferred,
    )
    .await
    .map_err(input)?;
    for id in &summary.interrupted {
        eprintln!(
            "note: run {id} had been interrupted (its process died); it is marked interrupted"
        );
    }
    output::print_summary(&summary);
    let checks = state.check_results(&summary.run_id).await.map_err(input)?;
    if !checks.is_empty() {
        output::print_checks(&checks, Format::Table);
    }
    output::print_failures(&summary);
    if let Err(e) =
        monitor::evaluate_and_notify(&project_arc, &graph_arc, &state, chrono::Utc::now()).await
    {
        eprintln!("warning: alerts were not evaluated: {e}");
    }
    if summary.ok() {
        // What a successful run deployed: the data products as declared now.
        state
            .save_products(&products, &summary.run_id)
            .await
            .map_err(input)?;
        if full_run {
            // Tables no longer in the project are no longer deployed.
            state
                .forget_deployments_except(graph_arc.order())
                .await
                .map_err(input)?;
        }
        Ok(())
    } else {
        Err(Failure::Failed)
    }
}

/// The data products as JSON definitions, for the state store.
fn product_definitions(project: &Project) -> Vec<(String, String)> {
    project
        .products
        .values()
        .map(|p| {
            let access: Vec<String> = p
                .access
                .iter()
                .map(|a| format!("{a:?}").to_lowercase())
                .collect();
            let def = serde_json::json!({
                "description": p.description,
                "owner": p.owner,
                "consumers": p.consumers,
                "models": p.models,
                "freshness_seconds": p.freshness_seconds,
                "access": access,
            });
            (p.name.clone(), def.to_string())
        })
        .collect()
}

async fn check(dir: &std::path::Path, select: String, format: Format) -> Result<(), Failure> {
    let engine = engine(dir).await?;
    let graph = engine.graph();
    let selected = graph.select(&select).map_err(input)?;
    let now = chrono::Utc::now();
    let info = strata_runtime::RunInfo {
        run_id: format!("check-{}", now.format("%Y%m%dT%H%M%SZ")),
        started_at: now,
        full_refresh: false,
        interval: None,
    };
    let mut all = vec![];
    for name in graph.order().iter().filter(|n| selected.contains(*n)) {
        let Some(model) = engine.project().models.get(name) else {
            continue;
        };
        if !strata_engine::checks::has_checks(&engine, model) {
            continue;
        }
        match strata_engine::checks::check_current(&engine, model, &info)
            .await
            .map_err(input)?
        {
            Some(results) => all.extend(results),
            None => eprintln!("note: {name} has not been built yet; its checks did not run"),
        }
    }
    if all.is_empty() {
        println!("no checks to run");
        return Ok(());
    }
    output::print_checks(&all, format);
    if all.iter().any(|r| r.status == "fail") {
        Err(Failure::Failed)
    } else {
        Ok(())
    }
}
