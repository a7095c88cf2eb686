//! The `shop` example project: `strata init DIR --example shop [--scale N]`
//! writes a complete project (`strata.toml`, silver and gold models) plus
//! thirty days of realistic, deliberately flawed input data — duplicate and
//! malformed order lines, null keys, status updates, a missing day and a late
//! file, customer snapshots with stray spaces and bad rows — and `strata
//! example next-day` appends one more day. Everything is drawn from seeded
//! generators (one per day and per order), so the same scale and day always
//! give byte-identical files, however often and in whatever order the
//! generator ran. The generator's own state lives in `data/.example.json`.

mod data;
mod orders;
mod project;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use data::{
    Eligibility, apply_changes, base_customers, date_text, day_date, products, write_customers_csv,
    write_products_parquet,
};
use orders::{day_infos, write_orders};

/// Errors of the example generator.
#[derive(Debug, thiserror::Error)]
pub enum ExampleError {
    /// The scale is outside `1..=MAX_SCALE`.
    #[error("the scale must be between 1 and {max}, got {scale}")]
    InvalidScale {
        /// The scale asked for.
        scale: u32,
        /// The largest scale supported.
        max: u32,
    },
    /// The folder already holds a project.
    #[error("{} already contains a Strata project", dir.display())]
    AlreadyExists {
        /// The folder.
        dir: PathBuf,
    },
    /// The folder holds no example project (no `data/.example.json`).
    #[error("{} is not an example project ({reason})", dir.display())]
    NotAnExample {
        /// The folder.
        dir: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("cannot write or read {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Writing a CSV file failed.
    #[error("cannot write CSV file {}: {source}", path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: csv::Error,
    },
    /// Writing a Parquet file failed.
    #[error("cannot write Parquet file {}: {message}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// What one call of the generator wrote.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExampleSummary {
    /// Files written (project files and data files).
    pub files_written: usize,
    /// Distinct orders in the orders files written (without duplicate and
    /// update lines; malformed lines included).
    pub orders: u64,
    /// Rows of the customer snapshot written.
    pub customers: u64,
    /// Products written (200 by `init_shop`, 0 by `next_day`).
    pub products: u64,
    /// The days whose orders files were written, ascending.
    pub days: Vec<NaiveDate>,
}

/// The largest supported scale (2,000 × scale customers are held in memory).
pub const MAX_SCALE: u32 = 10_000;

const SEED: u64 = 0x5354_5241_5441_0001;
const START: (i32, u32, u32) = (2024, 1, 1);
const INITIAL_DAYS: u32 = 30;
const MISSING_DAY: u32 = 12;
const LATE_DAY: u32 = 20;
const STATE_FILE: &str = "data/.example.json";
const GENERATOR: &str = "shop";
const VERSION: u32 = 1;

/// The generator's state, kept in `data/.example.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExampleState {
    example: String,
    version: u32,
    seed: u64,
    scale: u32,
    start: NaiveDate,
    initial_days: u32,
    days_generated: u32,
    missing_days: Vec<u32>,
    late_days: Vec<u32>,
    pending_late_days: Vec<u32>,
    /// Days with a multiple of the usual orders (`next-day --orders-factor`).
    #[serde(default)]
    spikes: Vec<(u32, u32)>,
}

/// The fixed parameters every generated value depends on.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) seed: u64,
    pub(crate) scale: u32,
    pub(crate) start: NaiveDate,
    pub(crate) initial_days: u32,
    pub(crate) missing_days: Vec<u32>,
    pub(crate) late_days: Vec<u32>,
    pub(crate) spikes: Vec<(u32, u32)>,
}

impl Plan {
    fn of(state: &ExampleState) -> Plan {
        Plan {
            seed: state.seed,
            scale: state.scale,
            start: state.start,
            initial_days: state.initial_days,
            missing_days: state.missing_days.clone(),
            late_days: state.late_days.clone(),
            spikes: state.spikes.clone(),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ExampleError + '_ {
    move |source| ExampleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `path` through a hidden temporary file in the same folder and a
/// rename, so a reader globbing the folder never sees a half-written file.
fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> Result<(), ExampleError>,
) -> Result<(), ExampleError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        fill(&mut w)?;
        w.flush().map_err(io_err(&tmp))?;
        drop(w);
        std::fs::rename(&tmp, path).map_err(io_err(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_text(path: &Path, text: &str) -> Result<(), ExampleError> {
    write_atomic(path, |w| w.write_all(text.as_bytes()).map_err(io_err(path)))
}

fn orders_path(dir: &Path, date: NaiveDate) -> PathBuf {
    dir.join("data/orders")
        .join(format!("orders_{}.ndjson", date_text(date)))
}

fn customers_path(dir: &Path, date: NaiveDate) -> PathBuf {
    dir.join("data/customers")
        .join(format!("customers_{}.csv", date_text(date)))
}

fn write_state(dir: &Path, state: &ExampleState) -> Result<(), ExampleError> {
    let path = dir.join(STATE_FILE);
    let text = serde_json::to_string_pretty(state).map_err(|e| ExampleError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    write_text(&path, &(text + "\n"))
}

fn read_state(dir: &Path) -> Result<ExampleState, ExampleError> {
    let path = dir.join(STATE_FILE);
    let not_example = |reason: String| ExampleError::NotAnExample {
        dir: dir.to_path_buf(),
        reason,
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(not_example(format!(
                "{STATE_FILE} is missing; create one with `strata init DIR --example shop`"
            )));
        }
        Err(source) => return Err(ExampleError::Io { path, source }),
    };
    let state: ExampleState = serde_json::from_str(&text)
        .map_err(|e| not_example(format!("{STATE_FILE} is not valid: {e}")))?;
    if state.example != GENERATOR || state.version != VERSION {
        return Err(not_example(format!(
            "{STATE_FILE} belongs to example `{}` version {}, this is `{GENERATOR}` version {VERSION}",
            state.example, state.version
        )));
    }
    check_scale(state.scale)?;
    use chrono::Datelike;
    if !(1900..=9000).contains(&state.start.year())
        || state.days_generated < state.initial_days.max(1)
    {
        return Err(not_example(format!(
            "{STATE_FILE} has an unexpected start or days_generated"
        )));
    }
    if state.days_generated >= 100_000 {
        return Err(not_example(format!(
            "{STATE_FILE}: no more days can be generated"
        )));
    }
    Ok(state)
}

fn check_scale(scale: u32) -> Result<(), ExampleError> {
    if scale == 0 || scale > MAX_SCALE {
        return Err(ExampleError::InvalidScale {
            scale,
            max: MAX_SCALE,
        });
    }
    Ok(())
}

/// Writes one day's orders file; returns the number of distinct orders.
fn write_orders_file(
    dir: &Path,
    plan: &Plan,
    products: &[data::Product],
    eligible: &Eligibility,
    infos: &[orders::DayInfo],
    day: u32,
    with_updates: bool,
) -> Result<u64, ExampleError> {
    let path = orders_path(dir, day_date(plan.start, i64::from(day)));
    let mut written = 0;
    write_atomic(&path, |w| {
        let stats = write_orders(w, plan, products, eligible, infos, day, with_updates)
            .map_err(io_err(&path))?;
        written = stats.orders;
        Ok(())
    })?;
    Ok(written)
}

/// Writes the customer snapshot of `day`; returns its number of rows.
fn write_snapshot(
    dir: &Path,
    plan: &Plan,
    customers: &[data::Customer],
    day: u32,
) -> Result<u64, ExampleError> {
    let path = customers_path(dir, day_date(plan.start, i64::from(day)));
    let mut rows = 0;
    write_atomic(&path, |w| {
        let stats =
            write_customers_csv(w, customers, plan.seed, plan.start, day).map_err(|source| {
                ExampleError::Csv {
                    path: path.clone(),
                    source,
                }
            })?;
        rows = stats.rows;
        Ok(())
    })?;
    Ok(rows)
}

/// Writes a complete example project (strata.toml, models, data) into `dir`
/// (created if missing; error if it already contains a strata.toml).
///
/// The data covers 2024-01-01 to 2024-01-30: 200 products (Parquet), one
/// snapshot of 2,000 × `scale` customers (CSV) and about 3,650 × `scale`
/// orders per day (NDJSON) — except 2024-01-12, which never gets a file, and
/// 2024-01-20, whose file arrives late, with the first [`next_day`].
pub fn init_shop(dir: &Path, scale: u32) -> Result<ExampleSummary, ExampleError> {
    check_scale(scale)?;
    if dir.join("strata.toml").exists() || dir.join(STATE_FILE).exists() {
        return Err(ExampleError::AlreadyExists {
            dir: dir.to_path_buf(),
        });
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let start = NaiveDate::from_ymd_opt(START.0, START.1, START.2).unwrap_or_default();
    let state = ExampleState {
        example: GENERATOR.to_string(),
        version: VERSION,
        seed: SEED,
        scale,
        start,
        initial_days: INITIAL_DAYS,
        days_generated: INITIAL_DAYS,
        missing_days: vec![MISSING_DAY],
        late_days: vec![LATE_DAY],
        pending_late_days: vec![LATE_DAY],
        spikes: vec![],
    };
    let plan = Plan::of(&state);
    let mut summary = ExampleSummary::default();

    for (rel, text) in project::PROJECT_FILES {
        write_text(&dir.join(rel), text)?;
        summary.files_written += 1;
    }
    for folder in ["models/bronze", "checks", "tests"] {
        let path = dir.join(folder);
        std::fs::create_dir_all(&path).map_err(io_err(&path))?;
    }

    let catalogue = products(plan.seed);
    let path = dir.join("data/products/products.parquet");
    write_atomic(&path, |w| {
        write_products_parquet(w, &catalogue).map_err(|message| ExampleError::Parquet {
            path: path.clone(),
            message,
        })
    })?;
    summary.files_written += 1;
    summary.products = catalogue.len() as u64;

    let customers = base_customers(plan.seed, plan.scale, plan.initial_days);
    summary.customers = write_snapshot(dir, &plan, &customers, plan.initial_days)?;
    summary.files_written += 1;

    let eligible = Eligibility::new(&customers);
    let infos = day_infos(&plan, plan.initial_days);
    for day in 1..=plan.initial_days {
        if plan.missing_days.contains(&day) || state.pending_late_days.contains(&day) {
            continue;
        }
        summary.orders += write_orders_file(dir, &plan, &catalogue, &eligible, &infos, day, true)?;
        summary.files_written += 1;
        summary.days.push(day_date(plan.start, i64::from(day)));
    }

    write_state(dir, &state)?;
    summary.files_written += 1;
    Ok(summary)
}

/// Appends the next day's files to an existing example project: that day's
/// orders file (on the first call also the late 2024-01-20 file) and a new
/// customer snapshot in which ~2% of the customers changed region or e-mail,
/// ~0.5% were deleted, ~0.5% are new, and those deleted the day before are back.
pub fn next_day(dir: &Path) -> Result<ExampleSummary, ExampleError> {
    next_day_with(dir, 1)
}

/// [`next_day`] with `orders_factor` times the usual number of orders on the
/// new day (a promotion, a bot, a double export: what volume anomaly
/// detection is there to catch).
pub fn next_day_with(dir: &Path, orders_factor: u32) -> Result<ExampleSummary, ExampleError> {
    let mut state = read_state(dir)?;
    let day = state.days_generated + 1;
    if orders_factor > 1 {
        state.spikes.push((day, orders_factor.min(1000)));
    }
    let plan = Plan::of(&state);
    let mut summary = ExampleSummary::default();

    // Replay the customer history from the initial snapshot, remembering who
    // existed on each day an update in today's file may reach back to.
    let catalogue = products(plan.seed);
    let mut customers = base_customers(plan.seed, plan.scale, plan.initial_days);
    let mut eligible = Eligibility::new(&customers);
    for d in plan.initial_days + 1..=day {
        apply_changes(&mut customers, plan.seed, d);
        if d + 7 >= day {
            eligible.record(d, &customers);
        }
    }
    let infos = day_infos(&plan, day);

    let mut days: Vec<(u32, bool)> = state
        .pending_late_days
        .iter()
        .filter(|d| **d < day)
        .map(|d| (*d, false))
        .collect();
    if !plan.missing_days.contains(&day) {
        days.push((day, true));
    }
    days.sort_unstable();
    for (d, with_updates) in days {
        summary.orders +=
            write_orders_file(dir, &plan, &catalogue, &eligible, &infos, d, with_updates)?;
        summary.files_written += 1;
        summary.days.push(day_date(plan.start, i64::from(d)));
    }
    summary.customers = write_snapshot(dir, &plan, &customers, day)?;
    summary.files_written += 1;

    state.days_generated = day;
    state.pending_late_days.retain(|d| *d >= day);
    write_state(dir, &state)?;
    summary.files_written += 1;
    Ok(summary)
}
