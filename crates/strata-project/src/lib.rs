//! Reads and validates a Strata project: `strata.toml`, the models under
//! `models/<layer>/` and their headers, into a [`Project`] — or into every
//! located problem at once ([`Errors`]).
//!
//! This crate does no SQL planning and links no query engine; `strata-graph`
//! reads the SQL. It must not depend on any other Strata crate.
//!
//! ```no_run
//! let project = strata_project::Project::load(std::path::Path::new("shop"))?;
//! for model in project.models.values() {
//!     println!("{} ({})", model.name, model.config.materialized.as_str());
//! }
//! # Ok::<(), strata_project::Errors>(())
//! ```
#![warn(missing_docs)]

pub mod alerts;
pub mod check;
pub mod config;
pub mod error;
pub mod grain;
pub mod model;
pub mod schedule;
pub mod serve;
pub mod source;
pub mod types;
pub mod unit;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use alerts::{AlertOn, AlertRule, Monitoring, Smtp, SmtpTls, WebhookFormat};
pub use check::{Check, CheckKind, OnFail, Severity, SqlCheckFile};
pub use error::{Errors, LocatedError};
pub use grain::{Grain, Interval, parse_time};
pub use model::{ColumnSpec, Materialization, Model, ModelConfig, Partitioning, Strategy};
pub use schedule::{Schedule, Trigger};
pub use serve::{ApiToken, Role, Serve, SqlUser};
pub use source::{
    CsvOptions, Database, Format, Http, OnBadRows, Pagination, Relation, SchemaDrift, Source,
    SourceMode,
};
pub use types::ColumnType;

use config::{PROJECT_KEYS, RawConfig, RawSource, SOURCE_KEYS};
use error::did_you_mean;

/// The file name of a project's configuration.
pub const CONFIG_FILE: &str = "strata.toml";

/// A layer of the lakehouse; a model's layer is its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    /// Raw data as it arrived.
    Bronze,
    /// Typed, cleaned, deduplicated.
    Silver,
    /// Data products for consumers.
    Gold,
}

impl Layer {
    /// All layers, upstream first.
    pub const ALL: [Layer; 3] = [Layer::Bronze, Layer::Silver, Layer::Gold];

    /// `bronze`, `silver` or `gold`.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Bronze => "bronze",
            Layer::Silver => "silver",
            Layer::Gold => "gold",
        }
    }

    /// Parses a layer name.
    pub fn parse(s: &str) -> Option<Layer> {
        Layer::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// `[project] memory_budget`: how much query memory the tasks running side
/// by side may be expected to need (each table is expected to need what its
/// last build's query operators held at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryBudget {
    /// The heaviest task's expected need (at least 256 MB): the heaviest
    /// task runs alone, lighter ones share.
    #[default]
    Auto,
    /// No budget: tasks run side by side up to `max_parallel`.
    Off,
    /// At most this many bytes.
    Bytes(i64),
}

impl MemoryBudget {
    /// Parses `auto`, `off` or a size: a number and a unit (`B`, `KB`, `MB`,
    /// `GB`, `TB` in powers of 1000; `KiB`, `MiB`, `GiB`, `TiB` in powers of
    /// 1024), as DuckDB's `memory_limit` does.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let t = s.trim();
        match t.to_ascii_lowercase().as_str() {
            "auto" => return Ok(Self::Auto),
            "off" | "none" => return Ok(Self::Off),
            _ => {}
        }
        parse_size(t).map(Self::Bytes).map_err(|e| match e {
            SizeError::Malformed => {
                format!("memory_budget `{s}` is not `auto`, `off` or a size such as `4GB`")
            }
            SizeError::OutOfRange => format!("memory_budget `{s}` is out of range"),
        })
    }
}

/// Why a size did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeError {
    /// Not a number followed by a unit.
    Malformed,
    /// Under one byte, or too large.
    OutOfRange,
}

/// Parses a size in bytes: a number and a unit (`B`, `KB`, `MB`, `GB`, `TB`
/// in powers of 1000; `KiB`, `MiB`, `GiB`, `TiB` in powers of 1024, in any
/// case), as DuckDB's `memory_limit` does: `4GB`, `1.5 GiB`, `128MB`.
pub fn parse_size(s: &str) -> std::result::Result<i64, SizeError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number.parse().map_err(|_| SizeError::Malformed)?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(SizeError::Malformed),
    };
    let bytes = n * factor;
    if !(1.0..9.0e18).contains(&bytes) {
        return Err(SizeError::OutOfRange);
    }
    Ok(bytes as i64)
}

/// `[project] auto_compact` by default: as Databricks' auto compaction
/// (`minNumFiles`), a table is compacted once 50 small files have gathered.
pub const DEFAULT_AUTO_COMPACT: usize = 50;

/// A parsed and validated project.
#[derive(Debug, Clone)]
pub struct Project {
    /// The project folder (absolute).
    pub root: PathBuf,
    /// `[project] name`.
    pub name: String,
    /// Where tables live: an absolute folder path or an object-store URL.
    pub lake: String,
    /// State store URL (`sqlite://ABSOLUTE` or `postgres://…`).
    pub state: String,
    /// Engine: `local`, or `ballista://HOST:PORT` for a Ballista cluster.
    pub engine: String,
    /// On a Ballista engine, whether a model the cluster cannot run may run
    /// locally instead (`fallback = "local"`); otherwise it fails.
    pub fallback_local: bool,
    /// The target in use (`--target` or `[project] target`), if any.
    pub target: Option<String>,
    /// Where unchanged tables are read from instead of being built (the
    /// target's `defer`).
    pub defer: Option<Deferral>,
    /// `[openlineage]`, when run events are sent.
    pub openlineage: Option<OpenLineage>,
    /// `[storage]`: object-store options for the lake and file sources on
    /// object storage, `${ENV}` references expanded (secrets: never log them).
    pub storage: Vec<(String, String)>,
    /// Tasks run at once.
    pub max_parallel: usize,
    /// How much query memory tasks running side by side may be expected to need.
    pub memory_budget: MemoryBudget,
    /// Compact a table during a run once it has this many files smaller than
    /// its target file size (0: never).
    pub auto_compact: usize,
    /// Sources by name.
    pub sources: BTreeMap<String, Source>,
    /// Models by qualified name (`silver.orders`).
    pub models: BTreeMap<String, Model>,
    /// SQL checks under `checks/`, by file name.
    pub sql_checks: Vec<SqlCheckFile>,
    /// Data products by name.
    pub products: BTreeMap<String, Product>,
    /// `[schedules.NAME]`, run by `strata serve`.
    pub schedules: BTreeMap<String, Schedule>,
    /// Unit tests under `tests/`.
    pub unit_tests: Vec<unit::UnitTest>,
    /// `[alerts.NAME]` rules.
    pub alerts: BTreeMap<String, AlertRule>,
    /// `[smtp]`, when e-mail alerts are configured.
    pub smtp: Option<Smtp>,
    /// `[monitoring]` (defaults when absent).
    pub monitoring: Monitoring,
    /// `[serve]` (defaults when absent).
    pub serve: Serve,
}

/// The target a deferring target reads unchanged tables from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferral {
    /// Its name (`prod`).
    pub target: String,
    /// Its lake (read only).
    pub lake: String,
    /// Its state store (read only: its deployments say what is unchanged).
    pub state: String,
}

/// `[openlineage]`: the endpoint OpenLineage run events go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenLineage {
    /// Where events are POSTed.
    pub url: String,
    /// The jobs' namespace.
    pub namespace: String,
    /// Bearer token, if any.
    pub api_key: Option<String>,
    /// Seconds to wait per event.
    pub timeout_seconds: u64,
}

/// How consumers may reach a data product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Postgres-wire SQL.
    Sql,
    /// The HTTP API.
    Api,
    /// The web dashboard.
    Dashboard,
}

/// A data product: models offered to consumers, with an owner and an SLA.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    /// Its name.
    pub name: String,
    /// What it offers.
    pub description: Option<String>,
    /// Who answers for it.
    pub owner: Option<String>,
    /// Who relies on it.
    pub consumers: Vec<String>,
    /// The models it exposes.
    pub models: Vec<String>,
    /// Freshness SLA in seconds.
    pub freshness_seconds: Option<i64>,
    /// How consumers reach it.
    pub access: Vec<Access>,
}

impl Project {
    /// Reads the project in `root`, reporting every problem found.
    pub fn load(root: &Path) -> Result<Project, Errors> {
        Self::load_target(root, None)
    }

    /// Reads and validates the project at `root` for `target` (else the
    /// `[project] target`, else no target): the target's lake, state and
    /// engine replace the `[project]` ones.
    pub fn load_target(root: &Path, target: Option<&str>) -> Result<Project, Errors> {
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        let cfg_path = root.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| {
            LocatedError::file(
                &cfg_path,
                format!("cannot read the project configuration: {e}"),
            )
            .with_help("run `strata init DIR` to create a project, or pass --project DIR")
        })?;
        let rel_cfg = PathBuf::from(CONFIG_FILE);
        let raw: RawConfig = toml::from_str(&text).map_err(|e| {
            let keys = keys_for_section(&text, e.span().map(|r| r.start).unwrap_or(0));
            toml_error(&rel_cfg, &text, 0, &e, &keys)
        })?;
        let mut errors = Errors::default();
        let at = |span: std::ops::Range<usize>, msg: String| {
            LocatedError::at(&rel_cfg, &text, span.start, span.len(), msg)
        };

        let name = raw.project.name.clone();
        let resolve_place =
            |value: &toml::Spanned<String>, errors: &mut Errors| -> Option<String> {
                match expand_env(value.get_ref()) {
                    Ok(v) => Some(v),
                    Err(var) => {
                        errors.push(
                            at(
                                value.span(),
                                format!("environment variable `{var}` is not set"),
                            )
                            .with_help(format!("export {var}=… before running strata")),
                        );
                        None
                    }
                }
            };
        // The target: `--target`, else `[project] target`, else none.
        let target_name: Option<(String, Option<std::ops::Range<usize>>)> = match target {
            Some(t) => Some((t.to_string(), None)),
            None => raw
                .project
                .target
                .as_ref()
                .map(|t| (t.get_ref().clone(), Some(t.span()))),
        };
        let active = match &target_name {
            None => None,
            Some((t, span)) => match raw.targets.get(t) {
                Some(spec) => Some(spec.get_ref()),
                None => {
                    let known: Vec<&str> = raw.targets.keys().map(String::as_str).collect();
                    let msg = format!("there is no target `{t}`");
                    let help = match error::did_you_mean(t, known.iter().copied()) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None if known.is_empty() => {
                            "declare it as [targets.NAME] in strata.toml".to_string()
                        }
                        None => format!("known targets: {}", known.join(", ")),
                    };
                    errors.push(match span {
                        Some(span) => at(span.clone(), msg).with_help(help),
                        None => LocatedError::file(&rel_cfg, msg).with_help(help),
                    });
                    None
                }
            },
        };
        let resolve_lake = |value: Option<&toml::Spanned<String>>, errors: &mut Errors| match value
        {
            None => root.join("lake").display().to_string(),
            Some(l) => resolve_place(l, errors)
                .map(|v| absolutize(&root, &v))
                .unwrap_or_default(),
        };
        let resolve_state = |value: Option<&toml::Spanned<String>>, errors: &mut Errors| match value
        {
            None => format!("sqlite://{}", root.join(".strata/state.db").display()),
            Some(s) => match resolve_place(s, errors) {
                Some(v) => {
                    if let Some(p) = v.strip_prefix("sqlite://") {
                        format!("sqlite://{}", absolutize(&root, p))
                    } else if v.starts_with("postgres://") || v.starts_with("postgresql://") {
                        v
                    } else {
                        errors.push(
                            at(s.span(), "unknown state store".into())
                                .with_help("use sqlite://PATH or postgres://USER@HOST/DB"),
                        );
                        String::new()
                    }
                }
                None => String::new(),
            },
        };
        let resolve_engine =
            |value: Option<&toml::Spanned<String>>, errors: &mut Errors| match value {
                None => "local".to_string(),
                Some(e) if e.get_ref() == "local" => "local".to_string(),
                Some(e) => match check_engine(e.get_ref()) {
                    Ok(()) => e.get_ref().clone(),
                    Err(msg) => {
                        errors.push(at(e.span(), msg).with_help(
                            "use engine = \"local\" or engine = \"ballista://HOST:PORT\"",
                        ));
                        "local".to_string()
                    }
                },
            };
        let fallback_local = match active
            .and_then(|t| t.fallback.as_ref())
            .or(raw.project.fallback.as_ref())
        {
            None => false,
            Some(f) if f.get_ref() == "fail" => false,
            Some(f) if f.get_ref() == "local" => true,
            Some(f) => {
                errors.push(
                    at(
                        f.span(),
                        format!("fallback `{}` is not `fail` or `local`", f.get_ref()),
                    )
                    .with_help("fallback = \"local\" lets models the cluster cannot run run in this process"),
                );
                false
            }
        };
        let lake = resolve_lake(
            active
                .and_then(|t| t.lake.as_ref())
                .or(raw.project.lake.as_ref()),
            &mut errors,
        );
        let state = resolve_state(
            active
                .and_then(|t| t.state.as_ref())
                .or(raw.project.state.as_ref()),
            &mut errors,
        );
        let engine = resolve_engine(
            active
                .and_then(|t| t.engine.as_ref())
                .or(raw.project.engine.as_ref()),
            &mut errors,
        );
        let defer = match active.and_then(|t| t.defer.as_ref()) {
            None => None,
            Some(d) => match raw.targets.get(d.get_ref()) {
                None => {
                    errors.push(
                        at(
                            d.span(),
                            format!("there is no target `{}` to defer to", d.get_ref()),
                        )
                        .with_help("name another [targets.NAME]"),
                    );
                    None
                }
                Some(other) => {
                    let other = other.get_ref();
                    let d_lake = resolve_lake(
                        other.lake.as_ref().or(raw.project.lake.as_ref()),
                        &mut errors,
                    );
                    let d_state = resolve_state(
                        other.state.as_ref().or(raw.project.state.as_ref()),
                        &mut errors,
                    );
                    if d_lake == lake || d_state == state {
                        errors.push(
                            at(
                                d.span(),
                                format!(
                                    "target `{}` defers to `{}`, which has the same {}",
                                    target_name.as_ref().map(|t| t.0.as_str()).unwrap_or(""),
                                    d.get_ref(),
                                    if d_lake == lake { "lake" } else { "state store" }
                                ),
                            )
                            .with_help("give the deferring target its own lake and state, so it never writes the other's"),
                        );
                    }
                    Some(Deferral {
                        target: d.get_ref().clone(),
                        lake: d_lake,
                        state: d_state,
                    })
                }
            },
        };
        let openlineage = match &raw.openlineage {
            None => None,
            Some(o) => {
                let spec = o.get_ref();
                let url = resolve_place(&spec.url, &mut errors).unwrap_or_default();
                if !url.is_empty() && !url.starts_with("http://") && !url.starts_with("https://") {
                    errors.push(
                        at(spec.url.span(), format!("`{url}` is not an http(s) URL"))
                            .with_help("e.g. url = \"http://localhost:5000/api/v1/lineage\""),
                    );
                }
                let api_key = spec
                    .api_key
                    .as_ref()
                    .and_then(|k| resolve_place(k, &mut errors));
                Some(OpenLineage {
                    url,
                    namespace: spec.namespace.clone().unwrap_or_else(|| name.clone()),
                    api_key,
                    timeout_seconds: spec.timeout_seconds.unwrap_or(5).max(1),
                })
            }
        };
        let storage: Vec<(String, String)> = raw
            .storage
            .iter()
            .filter_map(|(k, v)| resolve_place(v, &mut errors).map(|v| (k.to_ascii_lowercase(), v)))
            .collect();
        let memory_budget = match raw.project.memory_budget.as_ref() {
            None => MemoryBudget::Auto,
            Some(v) => MemoryBudget::parse(v.get_ref()).unwrap_or_else(|msg| {
                errors.push(at(v.span(), msg).with_help(
                    "memory_budget = \"auto\" (the heaviest task's need), \"off\", or a size such as \"4GB\" or \"512MiB\"",
                ));
                MemoryBudget::Auto
            }),
        };
        let max_parallel = raw
            .project
            .max_parallel
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2)
            })
            .max(1);

        let mut sources = BTreeMap::new();
        for (sname, spanned) in &raw.sources {
            if !is_identifier(sname) {
                errors.push(
                    at(
                        spanned.span(),
                        format!("source name `{sname}` is not a valid table name"),
                    )
                    .with_help("use lowercase letters, digits and underscores"),
                );
                continue;
            }
            match resolve_source(&root, sname, spanned.get_ref(), &at) {
                Ok(s) => {
                    sources.insert(sname.clone(), s);
                }
                Err(es) => errors.0.extend(es.0),
            }
        }

        let mut models = BTreeMap::new();
        for layer in Layer::ALL {
            for path in files_with_extension(&root.join("models").join(layer.as_str()), "sql") {
                let rel = path.strip_prefix(&root).unwrap_or(&path).to_path_buf();
                let Some(short) = path.file_stem().and_then(|s| s.to_str()) else {
                    continue;
                };
                if !is_identifier(short) {
                    errors.push(
                        LocatedError::file(
                            &rel,
                            format!("model file name `{short}` is not a valid table name"),
                        )
                        .with_help("rename it with lowercase letters, digits and underscores"),
                    );
                    continue;
                }
                let text = match std::fs::read_to_string(&path) {
                    Ok(t) => t,
                    Err(e) => {
                        errors.push(LocatedError::file(&rel, format!("cannot read: {e}")));
                        continue;
                    }
                };
                if layer == Layer::Bronze
                    && (sources.contains_key(short) || raw.sources.contains_key(short))
                {
                    errors.push(
                        LocatedError::file(
                            &rel,
                            format!("bronze.{short} is both a source and a model"),
                        )
                        .with_help("rename the model or the source"),
                    );
                    continue;
                }
                match model::parse_model(&rel, layer, short, &text) {
                    Ok(m) => {
                        models.insert(m.name.clone(), m);
                    }
                    Err(es) => errors.0.extend(es.0),
                }
            }
        }
        let mut sql_checks = vec![];
        {
            for path in files_with_extension(&root.join("checks"), "sql") {
                let rel = path.strip_prefix(&root).unwrap_or(&path).to_path_buf();
                let name = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_string();
                match std::fs::read_to_string(&path) {
                    Ok(text) => match check::parse_sql_check(&rel, &name, &text) {
                        Ok(c) => sql_checks.push(c),
                        Err(es) => errors.0.extend(es.0),
                    },
                    Err(e) => errors.push(LocatedError::file(&rel, format!("cannot read: {e}"))),
                }
            }
        }
        let mut products = BTreeMap::new();
        for (pname, spanned) in &raw.products {
            let span = spanned.span();
            let raw_p = spanned.get_ref();
            for m in &raw_p.models {
                if !models.contains_key(m) {
                    let hint = match did_you_mean(m, models.keys().map(String::as_str)) {
                        Some(k) => format!("did you mean `{k}`?"),
                        None => "list models as layer.name, e.g. gold.daily_revenue".into(),
                    };
                    errors.push(
                        at(
                            span.clone(),
                            format!("product `{pname}` exposes unknown model `{m}`"),
                        )
                        .with_help(hint),
                    );
                }
            }
            let freshness_seconds = match raw_p.freshness.as_deref() {
                None => None,
                Some(f) => match check::parse_duration(f) {
                    Some(s) => Some(s),
                    None => {
                        errors.push(
                            at(
                                span.clone(),
                                format!("product `{pname}`: bad freshness `{f}`"),
                            )
                            .with_help("write a number and a unit: 30m, 6h, 1d"),
                        );
                        None
                    }
                },
            };
            let mut access = vec![];
            for a in raw_p
                .access
                .clone()
                .unwrap_or_else(|| vec!["sql".into(), "api".into(), "dashboard".into()])
            {
                match a.as_str() {
                    "sql" => access.push(Access::Sql),
                    "api" => access.push(Access::Api),
                    "dashboard" => access.push(Access::Dashboard),
                    other => errors.push(
                        at(
                            span.clone(),
                            format!("product `{pname}`: unknown access `{other}`"),
                        )
                        .with_help("use sql, api or dashboard"),
                    ),
                }
            }
            products.insert(
                pname.clone(),
                Product {
                    name: pname.clone(),
                    description: raw_p.description.clone(),
                    owner: raw_p.owner.clone(),
                    consumers: raw_p.consumers.clone().unwrap_or_default(),
                    models: raw_p.models.clone(),
                    freshness_seconds,
                    access,
                },
            );
        }
        let mut schedules = BTreeMap::new();
        for (sname, spanned) in &raw.schedules {
            match schedule::resolve(sname, spanned, &sources, &at) {
                Ok(s) => {
                    schedules.insert(sname.clone(), s);
                }
                Err(es) => errors.0.extend(es.0),
            }
        }
        let smtp = match &raw.smtp {
            None => None,
            Some(sm) => match alerts::resolve_smtp(sm, &at) {
                Ok(s) => Some(s),
                Err(es) => {
                    errors.0.extend(es.0);
                    None
                }
            },
        };
        let mut alert_rules = BTreeMap::new();
        for (aname, spanned) in &raw.alerts {
            match alerts::resolve_alert(aname, spanned, raw.smtp.is_some(), &at) {
                Ok(r) => {
                    alert_rules.insert(aname.clone(), r);
                }
                Err(es) => errors.0.extend(es.0),
            }
        }
        let monitoring = match &raw.monitoring {
            None => Monitoring::default(),
            Some(m) => alerts::resolve_monitoring(m, &at).unwrap_or_else(|es| {
                errors.0.extend(es.0);
                Monitoring::default()
            }),
        };
        let serve = match &raw.serve {
            None => Serve::default(),
            Some(m) => serve::resolve_serve(m, &at).unwrap_or_else(|es| {
                errors.0.extend(es.0);
                Serve::default()
            }),
        };
        let mut unit_tests = vec![];
        {
            for path in files_with_extension(&root.join("tests"), "toml") {
                let rel = path.strip_prefix(&root).unwrap_or(&path).to_path_buf();
                let tname = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_string();
                match std::fs::read_to_string(&path) {
                    Ok(text) => match unit::parse_unit_test(&root, &rel, &tname, &text) {
                        Ok(t) => {
                            if !models.contains_key(&t.model) {
                                let hint =
                                    match did_you_mean(&t.model, models.keys().map(String::as_str))
                                    {
                                        Some(k) => format!("did you mean `{k}`?"),
                                        None => "name the model as layer.name".into(),
                                    };
                                errors.push(
                                    LocatedError::file(
                                        &rel,
                                        format!("unit test of unknown model `{}`", t.model),
                                    )
                                    .with_help(hint),
                                );
                            }
                            unit_tests.push(t);
                        }
                        Err(es) => errors.0.extend(es.0),
                    },
                    Err(e) => errors.push(LocatedError::file(&rel, format!("cannot read: {e}"))),
                }
            }
        }
        errors.into_result(Project {
            root,
            name,
            target: target_name.map(|t| t.0),
            defer,
            openlineage,
            storage,
            lake,
            state,
            engine,
            fallback_local,
            max_parallel,
            memory_budget,
            auto_compact: raw.project.auto_compact.unwrap_or(DEFAULT_AUTO_COMPACT),
            sources,
            models,
            sql_checks,
            products,
            schedules,
            unit_tests,
            alerts: alert_rules,
            smtp,
            monitoring,
            serve,
        })
    }

    /// The model or source table behind a qualified name, if any.
    pub fn has_table(&self, name: &str) -> bool {
        self.models.contains_key(name)
            || self
                .sources
                .values()
                .any(|s| s.table() == name || s.quarantine_table() == name)
    }
}

fn resolve_source(
    root: &Path,
    name: &str,
    raw: &RawSource,
    at: &dyn Fn(std::ops::Range<usize>, String) -> LocatedError,
) -> Result<Source, Errors> {
    let mut errors = Errors::default();
    let format = match raw.format.get_ref().as_str() {
        "csv" => Format::Csv,
        "ndjson" | "json" | "jsonl" => Format::Ndjson,
        "parquet" => Format::Parquet,
        "postgres" | "postgresql" => Format::Postgres,
        "mysql" | "mariadb" => Format::Mysql,
        "http" | "api" => Format::Http,
        other => {
            let help = match did_you_mean(
                other,
                [
                    "csv", "ndjson", "json", "parquet", "postgres", "mysql", "http",
                ],
            ) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "use csv, ndjson, parquet, postgres, mysql or http".into(),
            };
            errors.push(
                at(
                    raw.format.span(),
                    format!("unknown format `{other}` for source `{name}`"),
                )
                .with_help(help),
            );
            Format::Csv
        }
    };
    let is_db = format.is_database();
    let is_http = format == Format::Http;
    let mode = match raw.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
        None if is_db || is_http => SourceMode::Snapshot,
        None => SourceMode::NewFiles,
        Some(("snapshot", _)) => SourceMode::Snapshot,
        Some(("new_files", _)) if !is_db && !is_http => SourceMode::NewFiles,
        Some(("cursor", _)) if is_db => SourceMode::Cursor,
        Some((other, span)) => {
            errors.push(
                at(
                    span,
                    format!(
                        "mode `{other}` does not apply to a {} source",
                        raw.format.get_ref()
                    ),
                )
                .with_help(if is_db {
                    "databases are read in `snapshot` or `cursor` mode"
                } else {
                    "files are read in `new_files` or `snapshot` mode"
                }),
            );
            SourceMode::Snapshot
        }
    };
    let http = if is_http {
        http_of(name, raw, at, &mut errors)
    } else {
        None
    };
    let database = if is_db {
        database_of(name, raw, mode, at, &mut errors)
    } else {
        let url = if is_http { &None } else { &raw.url };
        for (key, v) in [
            ("url", url),
            ("table", &raw.table),
            ("query", &raw.query),
            ("cursor", &raw.cursor),
        ] {
            if let Some(v) = v {
                errors.push(
                    at(
                        v.span(),
                        format!("`{key}` only applies to database (or, for `url`, API) sources"),
                    )
                    .with_help("set format = \"postgres\", \"mysql\" or \"http\", or remove it"),
                );
            }
        }
        None
    };
    let on_bad_rows = match raw
        .on_bad_rows
        .as_ref()
        .map(|m| (m.get_ref().as_str(), m.span()))
    {
        None | Some(("quarantine", _)) => OnBadRows::Quarantine,
        Some(("fail", _)) => OnBadRows::Fail,
        Some((other, span)) => {
            errors.push(
                at(span, format!("unknown on_bad_rows `{other}`"))
                    .with_help("use quarantine or fail"),
            );
            OnBadRows::Quarantine
        }
    };
    // Column names are normalized (lowercase, `_`) so SQL can name them unquoted;
    // the file's own spelling is still what is read.
    let columns = raw.columns.as_ref().map(|cols| {
        let mut out: Vec<(String, ColumnType)> = vec![];
        for (c, t) in cols {
            let name = normalize_name(c);
            if out.iter().any(|(n, _)| *n == name) {
                errors.push(at(
                    t.span(),
                    format!(
                        "column `{c}` is the same as another column once normalized to `{name}`"
                    ),
                ));
                continue;
            }
            match t.get_ref().parse::<ColumnType>() {
                Ok(ty) => out.push((name, ty)),
                Err(msg) => errors.push(at(t.span(), msg)),
            }
        }
        out
    });
    let one_char =
        |v: &Option<toml::Spanned<String>>, default: u8, what: &str, errors: &mut Errors| -> u8 {
            match v {
                None => default,
                Some(s) if s.get_ref().len() == 1 => s.get_ref().as_bytes()[0],
                Some(s) if s.get_ref() == "\\t" => b'\t',
                Some(s) => {
                    errors.push(at(s.span(), format!("{what} must be one character")));
                    default
                }
            }
        };
    let delimiter = one_char(&raw.delimiter, b',', "delimiter", &mut errors);
    let quote = one_char(&raw.quote, b'"', "quote", &mut errors);
    if format != Format::Csv
        && (raw.header.is_some() || raw.delimiter.is_some() || raw.quote.is_some())
    {
        errors.push(
            at(
                raw.format.span(),
                format!(
                    "header/delimiter/quote only apply to csv sources, not `{}`",
                    raw.format.get_ref()
                ),
            )
            .with_help("remove them or set format = \"csv\""),
        );
    }
    let mut checks = vec![];
    for c in raw.checks.iter().flatten() {
        let span = c.span();
        match crate::check::resolve(c.get_ref().clone(), span.clone(), at) {
            Ok(check) => {
                if matches!(
                    check.kind,
                    CheckKind::Relationships { .. } | CheckKind::Sql(_)
                ) {
                    errors.push(
                        at(span, format!("source `{name}`: `{}` checks are not supported on sources", check.name))
                            .with_help("source checks see only the ingested batch; put the rule on a silver model"),
                    );
                } else {
                    checks.push(check);
                }
            }
            Err(es) => errors.0.extend(es.0),
        }
    }
    let path = match (&raw.path, is_db || is_http) {
        (Some(p), true) => {
            errors.push(
                at(
                    p.span(),
                    format!("`path` does not apply to a {} source", raw.format.get_ref()),
                )
                .with_help("a database source reads `table` or `query` at `url`"),
            );
            String::new()
        }
        (None, true) => String::new(),
        (None, false) => {
            errors.push(
                at(raw.format.span(), format!("source `{name}` has no `path`"))
                    .with_help("add path = \"data/NAME/*.csv\" (a glob relative to the project)"),
            );
            String::new()
        }
        (Some(p), false) => match expand_env(p.get_ref()) {
            Ok(v) => absolutize(root, &v),
            Err(var) => {
                errors.push(at(
                    p.span(),
                    format!("environment variable `{var}` is not set"),
                ));
                String::new()
            }
        },
    };
    let grain = match &raw.grain {
        None => Grain::Day,
        Some(g) => Grain::parse(g.get_ref()).unwrap_or_else(|| {
            errors.push(
                at(g.span(), format!("unknown grain `{}`", g.get_ref()))
                    .with_help("use hour, day or month"),
            );
            Grain::Day
        }),
    };
    if let (Some(g), None) = (&raw.grain, &raw.time_column) {
        errors.push(
            at(g.span(), "`grain` needs `time_column`".into())
                .with_help("name the date or timestamp column: time_column = \"order_ts\""),
        );
    }
    let time = raw
        .time_column
        .as_ref()
        .map(|c| (normalize_name(c.get_ref()), grain));
    let schema_drift = match raw
        .schema_drift
        .as_ref()
        .map(|d| (d.get_ref().as_str(), d.span()))
    {
        None | Some(("add_columns", _)) => source::SchemaDrift::AddColumns,
        Some(("fail", _)) => source::SchemaDrift::Fail,
        Some(("rescue", _)) => source::SchemaDrift::Rescue,
        Some((other, span)) => {
            let help = match did_you_mean(other, ["add_columns", "fail", "rescue"]) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "use add_columns, fail or rescue".into(),
            };
            errors.push(at(span, format!("unknown schema_drift `{other}`")).with_help(help));
            source::SchemaDrift::AddColumns
        }
    };
    let freshness_seconds =
        raw.freshness
            .as_ref()
            .and_then(|f| match check::parse_duration(f.get_ref()) {
                Some(s) if s > 0 => Some(s),
                _ => {
                    errors.push(
                        at(f.span(), format!("bad freshness `{}`", f.get_ref()))
                            .with_help("write a number and a unit: 30m, 6h, 1d"),
                    );
                    None
                }
            });
    errors.into_result(Source {
        name: name.to_string(),
        format,
        path,
        time,
        freshness_seconds,
        schema_drift,
        path_as_written: raw
            .path
            .as_ref()
            .map(|p| p.get_ref().clone())
            .unwrap_or_default(),
        database,
        http,
        mode,
        on_bad_rows,
        columns,
        csv: CsvOptions {
            header: raw.header.unwrap_or(true),
            delimiter,
            quote,
        },
        null_values: raw
            .null_values
            .clone()
            .unwrap_or_else(|| vec![String::new()]),
        description: raw.description.clone(),
        checks,
    })
}

/// `url`, `headers`, `records`, `pagination` and the retry settings of an API source.
fn http_of(
    name: &str,
    raw: &RawSource,
    at: &dyn Fn(std::ops::Range<usize>, String) -> LocatedError,
    errors: &mut Errors,
) -> Option<source::Http> {
    let env = |v: &toml::Spanned<String>, errors: &mut Errors| match expand_env(v.get_ref()) {
        Ok(s) => Some(s),
        Err(var) => {
            errors.push(
                at(v.span(), format!("environment variable `{var}` is not set"))
                    .with_help(format!("export {var}=… before running strata")),
            );
            None
        }
    };
    let Some(url) = &raw.url else {
        errors.push(
            at(raw.format.span(), format!("source `{name}` has no `url`"))
                .with_help("add url = \"https://api.example.com/v1/items\""),
        );
        return None;
    };
    let url = env(url, errors)?;
    let mut headers = vec![];
    for (k, v) in raw.headers.iter().flatten() {
        headers.push((k.clone(), env(v, errors)?));
    }
    let records = match &raw.records {
        Some(r) if !(r.get_ref().is_empty() || r.get_ref().starts_with('/')) => {
            errors.push(
                at(r.span(), format!("`{}` is not a JSON pointer", r.get_ref()))
                    .with_help("write it as /data/items (empty for the whole body)"),
            );
            None
        }
        Some(r) if !r.get_ref().is_empty() => Some(r.get_ref().clone()),
        _ => None,
    };
    let pagination = match &raw.pagination {
        None => source::Pagination::None,
        Some(p) => {
            let span = p.span();
            let p = p.get_ref();
            let param = |default: &str| p.param.clone().unwrap_or_else(|| default.to_string());
            match p.kind.as_str() {
                "page" => source::Pagination::Page {
                    param: param("page"),
                    start: p.start.unwrap_or(1),
                    size: match (&p.size_param, p.size) {
                        (Some(sp), Some(n)) => Some((sp.clone(), n)),
                        (None, Some(n)) => Some((String::new(), n)),
                        _ => None,
                    },
                },
                "offset" => source::Pagination::Offset {
                    param: param("offset"),
                    limit_param: p.limit_param.clone().unwrap_or_else(|| "limit".into()),
                    limit: p.limit.unwrap_or(100).max(1),
                },
                "cursor" => {
                    match &p.next {
                        Some(next) if next.starts_with('/') => source::Pagination::Cursor {
                            param: param("cursor"),
                            next: next.clone(),
                        },
                        _ => {
                            errors.push(
                            at(span, "cursor pagination needs `next`, a JSON pointer to the next cursor".into())
                                .with_help("e.g. next = \"/meta/next_cursor\""),
                        );
                            return None;
                        }
                    }
                }
                "link" => source::Pagination::Link,
                other => {
                    errors.push(
                        at(span, format!("unknown pagination type `{other}`"))
                            .with_help("use page, offset, cursor or link"),
                    );
                    return None;
                }
            }
        }
    };
    let retry_delay_ms = match &raw.retry_delay {
        None => 1000,
        Some(d) => match check::parse_duration(d.get_ref()) {
            Some(s) => (s.max(0) as u64) * 1000,
            None => {
                errors.push(
                    at(d.span(), format!("bad retry_delay `{}`", d.get_ref()))
                        .with_help("write a number and a unit: 1s, 30s"),
                );
                1000
            }
        },
    };
    Some(source::Http {
        url,
        headers,
        records,
        pagination,
        retries: raw.retries.unwrap_or(3),
        retry_delay_ms,
        rate_limit: raw.rate_limit.filter(|r| *r > 0.0),
        max_pages: raw.max_pages.unwrap_or(10_000).max(1),
    })
}

/// `url`, `table` or `query`, and `cursor` of a database source.
fn database_of(
    name: &str,
    raw: &RawSource,
    mode: SourceMode,
    at: &dyn Fn(std::ops::Range<usize>, String) -> LocatedError,
    errors: &mut Errors,
) -> Option<source::Database> {
    let url = match &raw.url {
        None => {
            errors.push(
                at(raw.format.span(), format!("source `{name}` has no `url`")).with_help(
                    "add url = \"${DATABASE_URL}\" (the connection URL, from the environment)",
                ),
            );
            return None;
        }
        Some(u) => match expand_env(u.get_ref()) {
            Ok(v) => v,
            Err(var) => {
                errors.push(
                    at(u.span(), format!("environment variable `{var}` is not set"))
                        .with_help(format!("export {var}=… before running strata")),
                );
                return None;
            }
        },
    };
    let relation = match (&raw.table, &raw.query) {
        (Some(t), None) => {
            let ok = t
                .get_ref()
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
            if !ok {
                errors.push(
                    at(t.span(), format!("`{}` is not a table name", t.get_ref()))
                        .with_help("write schema.table or table; use `query` for anything else"),
                );
                return None;
            }
            source::Relation::Table(t.get_ref().clone())
        }
        (None, Some(q)) => {
            source::Relation::Query(q.get_ref().trim().trim_end_matches(';').to_string())
        }
        (Some(_), Some(q)) => {
            errors.push(
                at(
                    q.span(),
                    format!("source `{name}` has both `table` and `query`"),
                )
                .with_help("keep one"),
            );
            return None;
        }
        (None, None) => {
            errors.push(
                at(
                    raw.format.span(),
                    format!("source `{name}` has neither `table` nor `query`"),
                )
                .with_help("add table = \"public.customers\" or query = \"select …\""),
            );
            return None;
        }
    };
    let cursor = match (&raw.cursor, mode) {
        (Some(c), SourceMode::Cursor) => Some(normalize_name(c.get_ref())),
        (None, SourceMode::Cursor) => {
            errors.push(
                at(
                    raw.format.span(),
                    format!("source `{name}` is in cursor mode but has no `cursor`"),
                )
                .with_help("name the watermark column: cursor = \"updated_at\""),
            );
            return None;
        }
        (Some(c), _) => {
            errors.push(
                at(
                    c.span(),
                    "`cursor` only applies to mode = \"cursor\"".into(),
                )
                .with_help("set mode = \"cursor\" or remove `cursor`"),
            );
            None
        }
        (None, _) => None,
    };
    Some(source::Database {
        url,
        relation,
        cursor,
    })
}

/// The files of `dir` ending in `.ext`, sorted (none when `dir` is missing).
fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
        .collect();
    files.sort();
    files
}

/// The keys allowed in the `[table]` that holds byte `offset` of `strata.toml`.
fn keys_for_section(text: &str, offset: usize) -> Vec<&'static str> {
    let before = &text[..offset.min(text.len())];
    let header = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .unwrap_or("");
    if header.starts_with("[project") {
        PROJECT_KEYS.to_vec()
    } else if header.starts_with("[sources.") {
        SOURCE_KEYS.to_vec()
    } else if header.starts_with("[products.") {
        config::PRODUCT_KEYS.to_vec()
    } else if header.starts_with("[schedules.") {
        config::SCHEDULE_KEYS.to_vec()
    } else if header.starts_with("[alerts.") {
        alerts::ALERT_KEYS.to_vec()
    } else if header.starts_with("[smtp") {
        alerts::SMTP_KEYS.to_vec()
    } else if header.starts_with("[monitoring") {
        alerts::MONITORING_KEYS.to_vec()
    } else if header.starts_with("[serve.users.") {
        serve::USER_KEYS.to_vec()
    } else if header.starts_with("[serve.tokens.") {
        serve::TOKEN_KEYS.to_vec()
    } else if header.starts_with("[serve") {
        serve::SERVE_KEYS.to_vec()
    } else if header.starts_with("[targets.") {
        vec!["lake", "state", "engine", "fallback", "defer"]
    } else if header.starts_with("[openlineage") {
        vec!["url", "namespace", "api_key", "timeout_seconds"]
    } else {
        vec![
            "project",
            "sources",
            "products",
            "schedules",
            "alerts",
            "smtp",
            "monitoring",
            "serve",
            "targets",
            "openlineage",
            "storage",
        ]
    }
}

/// Converts a TOML error into a located error, with a "did you mean" for unknown keys.
pub(crate) fn toml_error(
    file: &Path,
    text: &str,
    offset: usize,
    e: &toml::de::Error,
    keys: &[&str],
) -> LocatedError {
    let span = e.span().unwrap_or(0..0);
    let msg = e.message().trim().to_string();
    let (msg, help) = if let Some(rest) = msg.strip_prefix("unknown field `") {
        let key = rest.split('`').next().unwrap_or("");
        let help = match did_you_mean(key, keys.iter().copied()) {
            Some(k) => format!("did you mean `{k}`?"),
            None => format!("allowed keys: {}", keys.join(", ")),
        };
        (format!("unknown key `{key}`"), Some(help))
    } else {
        (msg, None)
    };
    let e = LocatedError::at(file, text, offset + span.start, span.len(), msg);
    match help {
        Some(h) => e.with_help(h),
        None => e,
    }
}

/// Expands `${VAR}` references; `Err(VAR)` names the first variable that is not set.
pub fn expand_env(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            return Ok(out);
        };
        let var = &after[..end];
        match std::env::var(var) {
            Ok(v) => out.push_str(&v),
            Err(_) => return Err(var.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn absolutize(root: &Path, p: &str) -> String {
    if p.contains("://") || Path::new(p).is_absolute() {
        p.to_string()
    } else {
        root.join(p).display().to_string()
    }
}

/// A column name usable unquoted in SQL: lowercase, other characters → `_`
/// (`customerId` → `customerid`, `Order Date` → `order_date`).
pub fn normalize_name(name: &str) -> String {
    let mut s: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

/// True for names usable as unquoted SQL identifiers: `[a-z_][a-z0-9_]*`.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(
        toml: &str,
        models: &[(&str, &str)],
    ) -> (tempfile::TempDir, Result<Project, Errors>) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(CONFIG_FILE), toml).expect("write");
        for (p, sql) in models {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, sql).expect("write");
        }
        let r = Project::load(dir.path());
        (dir, r)
    }

    #[test]
    fn minimal_project_has_defaults() {
        let (dir, p) = project(
            "[project]\nname = \"x\"\n",
            &[("models/gold/a.sql", "select 1 as a")],
        );
        let p = p.expect("loads");
        assert_eq!(p.lake, dir.path().join("lake").display().to_string());
        assert!(p.state.ends_with(".strata/state.db"));
        assert!(p.models.contains_key("gold.a"));
    }

    #[test]
    fn memory_budget_is_auto_off_or_a_size_and_a_bad_one_is_placed() {
        assert_eq!(MemoryBudget::parse("auto"), Ok(MemoryBudget::Auto));
        assert_eq!(MemoryBudget::parse("OFF"), Ok(MemoryBudget::Off));
        assert_eq!(
            MemoryBudget::parse("4GB"),
            Ok(MemoryBudget::Bytes(4_000_000_000))
        );
        assert_eq!(
            MemoryBudget::parse("1.5 GiB"),
            Ok(MemoryBudget::Bytes(3 << 29))
        );
        assert_eq!(
            MemoryBudget::parse("512MiB"),
            Ok(MemoryBudget::Bytes(512 << 20))
        );
        for bad in ["", "lots", "4", "4 parsecs", "0MB"] {
            assert!(MemoryBudget::parse(bad).is_err(), "{bad}");
        }
        let (_dir, p) = project("[project]\nname = \"x\"\n", &[]);
        assert_eq!(p.expect("loads").memory_budget, MemoryBudget::Auto);
        let (_dir, p) = project("[project]\nname = \"x\"\nmemory_budget = \"2GB\"\n", &[]);
        assert_eq!(
            p.expect("loads").memory_budget,
            MemoryBudget::Bytes(2_000_000_000)
        );
        let (_dir, p) = project(
            "[project]\nname = \"x\"\nmemory_budget = \"2 gallons\"\n",
            &[],
        );
        let e = p.expect_err("a bad size").to_string();
        assert!(
            e.contains("strata.toml:3:") && e.contains("memory_budget `2 gallons`"),
            "{e}"
        );
    }

    #[test]
    fn auto_compact_is_fifty_small_files_unless_set() {
        let (_dir, p) = project("[project]\nname = \"x\"\n", &[]);
        assert_eq!(p.expect("loads").auto_compact, 50);
        let (_dir, p) = project("[project]\nname = \"x\"\nauto_compact = 0\n", &[]);
        assert_eq!(p.expect("loads").auto_compact, 0);
        let (_dir, p) = project("[project]\nname = \"x\"\nauto_compact = \"often\"\n", &[]);
        let e = p.expect_err("not a number").to_string();
        assert!(e.contains("strata.toml:3:"), "{e}");
        assert_eq!(parse_size("128MB"), Ok(128_000_000));
        assert_eq!(parse_size("lots"), Err(SizeError::Malformed));
        assert_eq!(parse_size("0B"), Err(SizeError::OutOfRange));
    }

    #[test]
    fn targets_override_lake_state_and_defer() {
        let toml = "[project]\nname = \"x\"\ntarget = \"dev\"\n\
            [targets.prod]\nlake = \"/data/prod-lake\"\nstate = \"sqlite:///data/prod.db\"\n\
            [targets.dev]\nlake = \"dev-lake\"\nstate = \"sqlite://dev.db\"\ndefer = \"prod\"\n\
            [openlineage]\nurl = \"http://127.0.0.1:5000/api/v1/lineage\"\n";
        let (dir, p) = project(toml, &[]);
        let p = p.expect("loads");
        assert_eq!(p.target.as_deref(), Some("dev"));
        assert_eq!(p.lake, dir.path().join("dev-lake").display().to_string());
        assert_eq!(
            p.state,
            format!("sqlite://{}", dir.path().join("dev.db").display())
        );
        let d = p.defer.expect("defers");
        assert_eq!(
            (d.target.as_str(), d.lake.as_str()),
            ("prod", "/data/prod-lake")
        );
        assert_eq!(d.state, "sqlite:///data/prod.db");
        let ol = p.openlineage.expect("openlineage");
        assert_eq!(ol.namespace, "x");
        assert_eq!(ol.timeout_seconds, 5);
        // --target wins over [project] target.
        let prod = Project::load_target(dir.path(), Some("prod")).expect("prod loads");
        assert_eq!(prod.lake, "/data/prod-lake");
        assert!(prod.defer.is_none());
        let e = Project::load_target(dir.path(), Some("prd"))
            .expect_err("unknown target")
            .to_string();
        assert!(
            e.contains("there is no target `prd`") && e.contains("did you mean `prod`?"),
            "{e}"
        );
    }

    #[test]
    fn deferring_to_the_same_lake_is_refused() {
        let toml = "[project]\nname = \"x\"\n\
            [targets.prod]\n\
            [targets.dev]\nstate = \"sqlite://dev.db\"\ndefer = \"prod\"\n";
        let (dir, _) = project(toml, &[]);
        let e = Project::load_target(dir.path(), Some("dev"))
            .expect_err("same lake")
            .to_string();
        assert!(
            e.contains("defers to `prod`, which has the same lake"),
            "{e}"
        );
        assert!(e.starts_with("strata.toml:6:9:"), "{e}");
    }

    #[test]
    fn unknown_source_key_is_located() {
        let (_d, p) = project(
            "[project]\nname = \"x\"\n[sources.o]\nformat = \"csv\"\npath = \"d/*.csv\"\nmodes = \"snapshot\"\n",
            &[],
        );
        let e = p.expect_err("unknown key").to_string();
        assert!(
            e.starts_with("strata.toml:6:1: unknown key `modes`; did you mean `mode`?"),
            "{e}"
        );
    }

    #[test]
    fn bad_toml_is_located() {
        let (_d, p) = project("[project\nname = \"x\"\n", &[]);
        assert!(
            p.expect_err("bad")
                .to_string()
                .starts_with("strata.toml:1:")
        );
    }

    #[test]
    fn every_model_error_is_reported_at_once() {
        let (_d, p) = project(
            "[project]\nname = \"x\"\n",
            &[
                (
                    "models/silver/a.sql",
                    "/* materialized = \"nope\" */ select 1",
                ),
                ("models/gold/b.sql", "/* colour = 1 */ select 1"),
            ],
        );
        let e = p.expect_err("two errors");
        assert_eq!(e.0.len(), 2, "{e}");
    }

    #[test]
    fn source_types_and_options_resolve() {
        let (_d, p) = project(
            "[project]\nname = \"x\"\n[sources.o]\nformat = \"csv\"\npath = \"d/*.csv\"\ndelimiter = \";\"\ncolumns = { id = \"bigint\", at = \"date\" }\n",
            &[],
        );
        let p = p.expect("loads");
        let s = &p.sources["o"];
        assert_eq!(s.csv.delimiter, b';');
        assert_eq!(
            s.columns.as_deref(),
            Some(
                &[
                    ("id".to_string(), ColumnType::Int64),
                    ("at".to_string(), ColumnType::Date)
                ][..]
            )
        );
    }

    #[test]
    fn bad_column_type_is_located() {
        let (_d, p) = project(
            "[project]\nname = \"x\"\n[sources.o]\nformat = \"csv\"\npath = \"d/*.csv\"\ncolumns = { id = \"bignum\" }\n",
            &[],
        );
        let e = p.expect_err("bad type").to_string();
        assert!(
            e.starts_with("strata.toml:6:18: unknown column type `bignum`"),
            "{e}"
        );
    }

    #[test]
    fn missing_env_var_is_named() {
        let (_d, p) = project(
            "[project]\nname = \"x\"\nlake = \"${STRATA_TEST_SURELY_UNSET}/lake\"\n",
            &[],
        );
        assert!(
            p.expect_err("unset")
                .to_string()
                .contains("`STRATA_TEST_SURELY_UNSET` is not set")
        );
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("daily_revenue2"));
        assert!(!is_identifier("Daily"));
        assert!(!is_identifier("2x"));
    }
}

#[cfg(test)]
mod product_tests {
    use super::*;

    #[test]
    fn products_are_validated() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[project]\nname = \"x\"\n[products.revenue]\nowner = \"finance\"\nmodels = [\"gold.revenu\"]\nfreshness = \"6h\"\naccess = [\"sql\", \"fax\"]\n",
        )
        .expect("write");
        std::fs::create_dir_all(dir.path().join("models/gold")).expect("mkdir");
        std::fs::write(dir.path().join("models/gold/revenue.sql"), "select 1 as x").expect("write");
        let e = Project::load(dir.path())
            .expect_err("two problems")
            .to_string();
        assert!(
            e.contains("unknown model `gold.revenu`; did you mean `gold.revenue`?"),
            "{e}"
        );
        assert!(e.contains("unknown access `fax`"), "{e}");
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[project]\nname = \"x\"\n[products.revenue]\nowner = \"finance\"\nmodels = [\"gold.revenue\"]\nfreshness = \"6h\"\n",
        )
        .expect("write");
        let p = Project::load(dir.path()).expect("valid");
        assert_eq!(p.products["revenue"].freshness_seconds, Some(21_600));
        assert_eq!(p.products["revenue"].access.len(), 3);
    }

    #[test]
    fn contracts_add_not_null_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(CONFIG_FILE), "[project]\nname = \"x\"\n").expect("write");
        std::fs::create_dir_all(dir.path().join("models/gold")).expect("mkdir");
        std::fs::write(
            dir.path().join("models/gold/r.sql"),
            "/*\n[columns.day]\ntype = \"date\"\nnullable = false\n[columns.revenue]\ntype = \"decimal(38,2)\"\n*/\nselect 1",
        )
        .expect("write");
        let p = Project::load(dir.path()).expect("valid");
        let m = &p.models["gold.r"];
        assert_eq!(m.config.columns.len(), 2);
        assert_eq!(m.config.columns[0].ty, Some(ColumnType::Date));
        assert_eq!(m.config.checks[0].name, "contract: not_null(day)");
    }
}

/// Checks an engine setting other than `local`: `ballista://HOST:PORT`.
pub fn check_engine(engine: &str) -> std::result::Result<(), String> {
    let Some(addr) = engine.strip_prefix("ballista://") else {
        return Err(format!(
            "engine `{engine}` is not `local` or a Ballista scheduler (`ballista://HOST:PORT`)"
        ));
    };
    let addr = addr.trim_end_matches('/');
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!(
            "engine `{engine}`: give the scheduler as ballista://HOST:PORT (e.g. ballista://127.0.0.1:50050)"
        )),
    }
}
