//! The raw, serde-level model of `strata.toml` (no I/O, unknown keys rejected).

use indexmap::IndexMap;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// The whole `strata.toml` file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[project]`: name and where things live.
    pub project: RawProject,
    /// `[sources.NAME]`: inputs that land in `bronze.NAME`.
    #[serde(default)]
    pub sources: BTreeMap<String, Spanned<RawSource>>,
    /// `[products.NAME]`: data products exposed to consumers.
    #[serde(default)]
    pub products: BTreeMap<String, Spanned<RawProduct>>,
    /// `[schedules.NAME]`: cron schedules and file sensors run by `strata serve`.
    #[serde(default)]
    pub schedules: BTreeMap<String, Spanned<RawSchedule>>,
    /// `[alerts.NAME]`: who hears about what.
    #[serde(default)]
    pub alerts: BTreeMap<String, Spanned<crate::alerts::RawAlert>>,
    /// `[smtp]`: the mail server e-mail alerts go through.
    pub smtp: Option<Spanned<crate::alerts::RawSmtp>>,
    /// `[monitoring]`: anomaly detection and freshness evaluation.
    pub monitoring: Option<Spanned<crate::alerts::RawMonitoring>>,
    /// `[serve]`: what `strata serve` listens on.
    pub serve: Option<Spanned<crate::serve::RawServe>>,
    /// `[targets.NAME]`: environments (dev, prod) overriding where things live.
    #[serde(default)]
    pub targets: BTreeMap<String, Spanned<RawTarget>>,
    /// `[openlineage]`: where run events are sent.
    pub openlineage: Option<Spanned<RawOpenLineage>>,
    /// `[storage]`: object-store options (endpoint, region, credentials as
    /// `${ENV}` references) for a lake or sources on `s3://`, `az://`, `gs://`.
    #[serde(default)]
    pub storage: IndexMap<String, Spanned<String>>,
}

/// `[targets.NAME]`: one environment; unset keys keep `[project]`'s values.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Where this target's Delta tables live.
    pub lake: Option<Spanned<String>>,
    /// This target's state store URL.
    pub state: Option<Spanned<String>>,
    /// This target's engine.
    pub engine: Option<Spanned<String>>,
    /// This target's fallback (`fail` or `local`).
    pub fallback: Option<Spanned<String>>,
    /// Read tables that are unchanged against this other target's deployment
    /// from that target's lake instead of building them here (never writing there).
    pub defer: Option<Spanned<String>>,
}

/// `[openlineage]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOpenLineage {
    /// The endpoint run events are POSTed to (e.g. `http://marquez:5000/api/v1/lineage`).
    pub url: Spanned<String>,
    /// The job namespace (default: the project's name).
    pub namespace: Option<String>,
    /// Sent as `Authorization: Bearer …` (`${ENV}` references are expanded).
    pub api_key: Option<Spanned<String>>,
    /// Seconds to wait for the endpoint per event (default 5).
    pub timeout_seconds: Option<u64>,
}

/// `[schedules.NAME]`: when `strata serve` starts runs, and of what.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// A cron expression (5 fields, or 6 with seconds first; `@daily` …).
    pub cron: Option<Spanned<String>>,
    /// The IANA time zone the cron expression is read in (default `UTC`).
    pub timezone: Option<Spanned<String>>,
    /// Which models to run (a selection expression; default everything, or for
    /// a sensor the source's downstream).
    pub select: Option<Spanned<String>>,
    /// After downtime, run every missed interval oldest first (`true`, default)
    /// or only the latest (`false`).
    pub catchup: Option<bool>,
    /// Runs of this schedule queued or running at once (default 1).
    pub max_active_runs: Option<u32>,
    /// The first tick considered for catch-up (default: when the schedule was first served).
    pub start: Option<Spanned<String>>,
    /// A sensor instead of a clock: run when new files of this source land.
    pub on_new_files: Option<Spanned<String>>,
    /// How often a sensor looks for new files (default `"60s"`).
    pub poll: Option<Spanned<String>>,
}

/// `[products.NAME]`: a data product — models offered to consumers with an owner and an SLA.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProduct {
    /// What it offers.
    pub description: Option<String>,
    /// Who answers for it.
    pub owner: Option<String>,
    /// Who relies on it.
    pub consumers: Option<Vec<String>>,
    /// The models it exposes (`gold.daily_revenue`).
    pub models: Vec<String>,
    /// Freshness SLA: the data is at most this old (`"6h"`).
    pub freshness: Option<String>,
    /// How consumers reach it: any of `sql`, `api`, `dashboard` (default all).
    pub access: Option<Vec<String>>,
}

/// `[project]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProject {
    /// The project's name.
    pub name: String,
    /// Where the Delta tables live: a folder (relative to the project) or a URL.
    /// Default `lake`.
    pub lake: Option<Spanned<String>>,
    /// The state store URL: `sqlite://PATH` (relative to the project) or
    /// `postgres://…`. Default `sqlite://.strata/state.db`.
    pub state: Option<Spanned<String>>,
    /// The engine: `local` (default) or `ballista://HOST:PORT`.
    pub engine: Option<Spanned<String>>,
    /// On a Ballista engine, what a model the cluster cannot run does:
    /// `fail` (default) or `local` (it runs in this process, and says so).
    pub fallback: Option<Spanned<String>>,
    /// The target used when `--target` is not given (default: none, the
    /// `[project]` settings as they are).
    pub target: Option<Spanned<String>>,
    /// Tasks run at once (default: the number of cores).
    pub max_parallel: Option<usize>,
    /// How much query memory tasks running side by side may be expected to
    /// need: `auto` (default: the heaviest task's), `off`, or a size (`4GB`).
    pub memory_budget: Option<Spanned<String>>,
    /// Compact a table during a run once it has this many files smaller than
    /// its target file size (default 50; 0 turns it off).
    pub auto_compact: Option<usize>,
}

/// `[sources.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// `csv`, `ndjson`, `json`, `parquet`, `postgres` or `mysql`.
    pub format: Spanned<String>,
    /// Files: a glob relative to the project (or absolute).
    pub path: Option<Spanned<String>>,
    /// Files: `snapshot` or `new_files` (default); databases: `snapshot`
    /// (default) or `cursor`.
    pub mode: Option<Spanned<String>>,
    /// Databases: the connection URL (`${ENV}` references are expanded).
    pub url: Option<Spanned<String>>,
    /// Databases: the table to read (`schema.table`).
    pub table: Option<Spanned<String>>,
    /// Databases: a SELECT to read instead of a table.
    pub query: Option<Spanned<String>>,
    /// Databases, `mode = "cursor"`: the watermark column.
    pub cursor: Option<Spanned<String>>,
    /// The date or timestamp column that places a row in a data interval:
    /// `strata status` then shows days (hours, months) with no data and data
    /// that arrived late.
    pub time_column: Option<Spanned<String>>,
    /// With `time_column`: `hour`, `day` (default) or `month`.
    pub grain: Option<Spanned<String>>,
    /// APIs: request headers (`${ENV}` references are expanded; never logged).
    pub headers: Option<IndexMap<String, Spanned<String>>>,
    /// APIs: a JSON pointer to the array of records (default: the body).
    pub records: Option<Spanned<String>>,
    /// APIs: how to fetch the next page.
    pub pagination: Option<Spanned<RawPagination>>,
    /// APIs: retries after a 429 or 5xx response or a failed connection (default 3).
    pub retries: Option<u32>,
    /// APIs: the first retry's wait, doubled each time (default `"1s"`).
    pub retry_delay: Option<Spanned<String>>,
    /// Freshness SLA: the source must deliver new rows at least this often (`"26h"`).
    pub freshness: Option<Spanned<String>>,
    /// APIs: requests per second at most.
    pub rate_limit: Option<f64>,
    /// APIs: the most pages one run reads (default 10000).
    pub max_pages: Option<u32>,
    /// What a column the source did not have before does: `add_columns`
    /// (default), `fail`, or `rescue` (into a `_rescued` JSON column).
    pub schema_drift: Option<Spanned<String>>,
    /// `quarantine` (default) or `fail`.
    pub on_bad_rows: Option<Spanned<String>>,
    /// Declared columns and their types, in order; inferred when absent.
    pub columns: Option<IndexMap<String, Spanned<String>>>,
    /// CSV: the first line holds column names (default true).
    pub header: Option<bool>,
    /// CSV: the field delimiter, one character (default `,`).
    pub delimiter: Option<Spanned<String>>,
    /// CSV: the quote character (default `"`).
    pub quote: Option<Spanned<String>>,
    /// Values read as null (default: the empty string).
    pub null_values: Option<Vec<String>>,
    /// What the source is, for the catalog.
    pub description: Option<String>,
    /// Checks and per-row expectations on each ingested batch (`[[sources.NAME.checks]]`).
    pub checks: Option<Vec<Spanned<crate::check::RawCheck>>>,
}

/// `pagination = { type = "page" | "offset" | "cursor" | "link", … }` of an API source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPagination {
    /// `page`, `offset`, `cursor` or `link`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The query parameter carrying the page number, offset or cursor.
    pub param: Option<String>,
    /// `page`: the first page number (default 1).
    pub start: Option<i64>,
    /// `page`: the query parameter for the page size.
    pub size_param: Option<String>,
    /// `page`: the page size asked for.
    pub size: Option<i64>,
    /// `offset`: the query parameter for the page size (default `limit`).
    pub limit_param: Option<String>,
    /// `offset`: the page size (default 100).
    pub limit: Option<i64>,
    /// `cursor`: a JSON pointer to the next cursor in the body.
    pub next: Option<String>,
}

/// The raw TOML header of a model file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelConfig {
    /// `table` (default), `view`, `incremental` or `scd2`.
    pub materialized: Option<Spanned<String>>,
    /// For incremental models: `append` (default) or `merge`.
    pub strategy: Option<Spanned<String>>,
    /// Key columns for `merge` and `scd2`.
    pub unique_key: Option<Spanned<Vec<String>>>,
    /// What the model holds, for the catalog.
    pub description: Option<String>,
    /// Who answers for the model.
    pub owner: Option<String>,
    /// Free tags for selection (`tag:NAME`).
    pub tags: Option<Vec<String>>,
    /// Upstream tables an incremental model reads in full on every run (for
    /// example a dimension joined to the new rows), instead of only new rows.
    pub lookups: Option<Spanned<Vec<String>>>,
    /// Data checks and per-row expectations (`[[checks]]`).
    pub checks: Option<Vec<Spanned<crate::check::RawCheck>>>,
    /// Attempts after a failure caused by storage or another outside system (default 0).
    pub retries: Option<u32>,
    /// Wait before the first retry, doubled for each next one (default `"5s"`).
    pub retry_delay: Option<Spanned<String>>,
    /// Longest a run of the model may take (e.g. `"30m"`); then it fails.
    pub timeout: Option<Spanned<String>>,
    /// Freshness SLA: the table must receive new rows at least this often (`"6h"`).
    pub freshness: Option<Spanned<String>>,
    /// The contract: columns the query must produce, in order (`[columns.NAME]`).
    pub columns: Option<indexmap::IndexMap<String, Spanned<RawColumn>>>,
    /// `replace_range`: the date or timestamp column that places a row in an interval.
    pub partition_by: Option<Spanned<String>>,
    /// `replace_range`: `hour`, `day` (default) or `month`.
    pub grain: Option<Spanned<String>>,
    /// `replace_range`: earlier intervals re-processed on every run (default 0).
    pub lookback: Option<Spanned<u32>>,
}

/// `[columns.NAME]` in a model header: one column of the model's contract.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawColumn {
    /// The type (`bigint`, `double`, `string`, `boolean`, `date`, `timestamp`, `decimal(p,s)`).
    #[serde(rename = "type")]
    pub ty: Option<String>,
    /// `false`: the column may never be null (checked on every publish).
    pub nullable: Option<bool>,
    /// What the column means.
    pub description: Option<String>,
}

/// The keys allowed in a model header, for "did you mean" hints.
pub const MODEL_KEYS: &[&str] = &[
    "materialized",
    "strategy",
    "unique_key",
    "description",
    "owner",
    "tags",
    "lookups",
    "checks",
    "columns",
    "retries",
    "retry_delay",
    "timeout",
    "freshness",
    "partition_by",
    "grain",
    "lookback",
];

/// The keys allowed under `[sources.NAME]`, for "did you mean" hints.
pub const SOURCE_KEYS: &[&str] = &[
    "format",
    "path",
    "mode",
    "url",
    "table",
    "query",
    "cursor",
    "time_column",
    "grain",
    "schema_drift",
    "on_bad_rows",
    "columns",
    "header",
    "delimiter",
    "quote",
    "null_values",
    "description",
    "checks",
    "freshness",
];

/// The keys allowed under `[project]`, for "did you mean" hints.
pub const PROJECT_KEYS: &[&str] = &[
    "name",
    "lake",
    "state",
    "engine",
    "fallback",
    "max_parallel",
    "memory_budget",
    "auto_compact",
    "target",
];

/// The keys allowed under `[schedules.NAME]`, for "did you mean" hints.
pub const SCHEDULE_KEYS: &[&str] = &[
    "cron",
    "timezone",
    "select",
    "catchup",
    "max_active_runs",
    "start",
    "on_new_files",
    "poll",
];

/// The keys allowed under `[products.NAME]`, for "did you mean" hints.
pub const PRODUCT_KEYS: &[&str] = &[
    "description",
    "owner",
    "consumers",
    "models",
    "freshness",
    "access",
];
