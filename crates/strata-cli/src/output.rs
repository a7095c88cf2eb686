//! Tables for people, CSV and JSON for machines.

use comfy_table::{Cell, CellAlignment, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use strata_engine::arrow::datatypes::SchemaRef;
use strata_engine::arrow::record_batch::RecordBatch;
use strata_runtime::RunSummary;
use strata_state::{CheckResult, RunRecord, TaskRecord};

use crate::Format;

pub(crate) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    t
}

pub(crate) fn right(s: impl ToString) -> Cell {
    Cell::new(s.to_string()).set_alignment(CellAlignment::Right)
}

/// Prints query results.
pub fn print_batches(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: Format,
) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Table => {
            let text = if batches.iter().all(|b| b.num_rows() == 0) {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                format!("{}\n(0 rows)", names.join(" | "))
            } else {
                strata_engine::arrow::util::pretty::pretty_format_batches(batches)
                    .map_err(|e| e.to_string())?
                    .to_string()
            };
            use std::io::Write;
            writeln!(out, "{text}").map_err(|e| e.to_string())
        }
        Format::Csv => {
            let mut w = strata_engine::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            for b in batches {
                w.write(b).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Format::Json => {
            let mut w = strata_engine::arrow::json::LineDelimitedWriter::new(out);
            for b in batches {
                w.write(b).map_err(|e| e.to_string())?;
            }
            w.finish().map_err(|e| e.to_string())
        }
    }
}

fn secs(start: &Option<String>, end: &Option<String>) -> Option<f64> {
    let s = chrono::DateTime::parse_from_rfc3339(start.as_deref()?).ok()?;
    let e = chrono::DateTime::parse_from_rfc3339(end.as_deref()?).ok()?;
    Some((e - s).num_milliseconds() as f64 / 1000.0)
}

/// A task's peak query memory for people: `412 MB`, `-` when not measured.
fn megabytes(bytes: i64) -> String {
    match bytes {
        b if b <= 0 => "-".into(),
        b if b < 1 << 20 => "<1 MB".into(),
        b => format!("{} MB", (b + (1 << 19)) >> 20),
    }
}

fn json_line(v: serde_json::Value) {
    println!("{v}");
}

/// Prints one run's tasks.
pub fn print_tasks(tasks: &[TaskRecord], format: Format) {
    match format {
        Format::Json => {
            for t in tasks {
                json_line(serde_json::json!({
                    "run_id": t.run_id, "task": t.task, "kind": t.kind, "status": t.status,
                    "started_at": t.started_at, "ended_at": t.ended_at, "rows_read": t.rows_read,
                    "rows_written": t.rows_written, "rows_quarantined": t.rows_quarantined,
                    "delta_version": t.delta_version, "message": t.message, "error": t.error,
                    "peak_memory_bytes": t.peak_memory,
                }));
            }
        }
        Format::Csv => {
            println!(
                "task,kind,status,rows_read,rows_written,rows_quarantined,delta_version,seconds,peak_memory_bytes"
            );
            for t in tasks {
                println!(
                    "{},{},{},{},{},{},{},{},{}",
                    t.task,
                    t.kind,
                    t.status,
                    t.rows_read,
                    t.rows_written,
                    t.rows_quarantined,
                    t.delta_version.map(|v| v.to_string()).unwrap_or_default(),
                    secs(&t.started_at, &t.ended_at)
                        .map(|s| format!("{s:.3}"))
                        .unwrap_or_default(),
                    t.peak_memory
                );
            }
        }
        Format::Table => println!("{}", task_table(tasks)),
    }
}

fn task_table(tasks: &[TaskRecord]) -> Table {
    let mut t = table(&[
        "table",
        "kind",
        "status",
        "rows read",
        "rows written",
        "quarantined",
        "version",
        "time",
        "memory",
        "note",
    ]);
    for r in tasks {
        let incremental = r.kind == "ingest" || r.kind == "incremental" || r.kind == "scd2";
        t.add_row(vec![
            Cell::new(&r.task),
            Cell::new(&r.kind),
            Cell::new(&r.status),
            right(if incremental || r.rows_read > 0 {
                r.rows_read.to_string()
            } else {
                "-".into()
            }),
            right(r.rows_written),
            right(if r.rows_quarantined > 0 {
                r.rows_quarantined.to_string()
            } else {
                "-".into()
            }),
            right(
                r.delta_version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
            ),
            right(
                secs(&r.started_at, &r.ended_at)
                    .map(|s| format!("{s:.2}s"))
                    .unwrap_or_else(|| "-".into()),
            ),
            right(megabytes(r.peak_memory)),
            Cell::new(r.message.clone().unwrap_or_default()),
        ]);
    }
    t
}

/// Prints run history.
pub fn print_runs(runs: &[RunRecord], format: Format) {
    match format {
        Format::Json => {
            for r in runs {
                json_line(serde_json::json!({
                    "run_id": r.run_id, "started_at": r.started_at, "ended_at": r.ended_at, "status": r.status,
                    "selection": r.selection, "full_refresh": r.full_refresh, "trigger": r.trigger,
                    "interval_start": r.interval.as_ref().map(|i| i.0.clone()),
                    "interval_end": r.interval.as_ref().map(|i| i.1.clone()),
                    "resumed_from": r.resumed_from,
                }));
            }
        }
        Format::Csv => {
            println!("run_id,started_at,ended_at,status,selection,full_refresh,trigger");
            for r in runs {
                println!(
                    "{},{},{},{},{},{},{}",
                    r.run_id,
                    r.started_at,
                    r.ended_at.clone().unwrap_or_default(),
                    r.status,
                    r.selection,
                    r.full_refresh,
                    r.trigger
                );
            }
        }
        Format::Table => {
            let mut t = table(&["run", "started", "status", "time", "selection", "trigger"]);
            for r in runs {
                t.add_row(vec![
                    Cell::new(&r.run_id),
                    Cell::new(&r.started_at),
                    Cell::new(&r.status),
                    right(
                        secs(&Some(r.started_at.clone()), &r.ended_at)
                            .map(|s| format!("{s:.2}s"))
                            .unwrap_or_else(|| "-".into()),
                    ),
                    Cell::new(if r.selection.is_empty() {
                        "(all)"
                    } else {
                        &r.selection
                    }),
                    Cell::new(&r.trigger),
                ]);
            }
            println!("{t}");
        }
    }
}

/// Prints check results.
pub fn print_checks(results: &[CheckResult], format: Format) {
    match format {
        Format::Json => {
            for r in results {
                json_line(serde_json::json!({
                    "run_id": r.run_id, "model": r.model, "check": r.check_name, "kind": r.kind,
                    "severity": r.severity, "status": r.status, "failing_rows": r.failing_rows,
                    "action": r.action, "sample": serde_json::from_str::<serde_json::Value>(&r.sample).unwrap_or_default(),
                    "checked_at": r.checked_at,
                    "interval_start": r.interval.as_ref().map(|i| &i.0),
                    "interval_end": r.interval.as_ref().map(|i| &i.1),
                }));
            }
        }
        Format::Csv => {
            println!("model,check,kind,severity,status,failing_rows,action");
            for r in results {
                println!(
                    "{},\"{}\",{},{},{},{},{}",
                    r.model,
                    r.check_name.replace('"', "\"\""),
                    r.kind,
                    r.severity,
                    r.status,
                    r.failing_rows,
                    r.action.clone().unwrap_or_default()
                );
            }
        }
        Format::Table => {
            let per_interval = results.iter().any(|r| r.interval.is_some());
            let mut header = vec!["table"];
            if per_interval {
                header.push("interval from");
            }
            header.extend(["check", "kind", "on failure", "status", "failing", "action"]);
            let mut t = table(&header);
            for r in results {
                let mut row = vec![Cell::new(&r.model)];
                if per_interval {
                    row.push(Cell::new(
                        r.interval
                            .as_ref()
                            .map(|i| i.0.as_str())
                            .unwrap_or("(whole table)"),
                    ));
                }
                row.extend([
                    Cell::new(&r.check_name),
                    Cell::new(&r.kind),
                    Cell::new(&r.severity),
                    Cell::new(&r.status),
                    right(r.failing_rows),
                    Cell::new(r.action.clone().unwrap_or_default()),
                ]);
                t.add_row(row);
            }
            println!("{t}");
        }
    }
}

/// Prints the summary of a finished run.
pub fn print_summary(s: &RunSummary) {
    println!("{}", task_table(&s.tasks));
    let count = |st: &str| s.tasks.iter().filter(|t| t.status == st).count();
    println!(
        "run {}: {} in {:.2}s — {} succeeded, {} skipped, {} failed, {} not run",
        s.run_id,
        s.status,
        s.duration.as_secs_f64(),
        count("success"),
        count("skipped"),
        count("failed"),
        count("upstream_failed")
    );
}

/// Prints the errors of failed tasks.
pub fn print_failures(s: &RunSummary) {
    for t in s.tasks.iter().filter(|t| t.status == "failed") {
        eprintln!(
            "\n✗ {} failed:\n  {}",
            t.task,
            t.error.clone().unwrap_or_default().replace('\n', "\n  ")
        );
    }
}

/// Prints unit-test outcomes, then each failure's row diff.
pub fn print_tests(outcomes: &[strata_engine::unit::TestOutcome]) {
    let mut t = table(&["test", "model", "status"]);
    for o in outcomes {
        t.add_row(vec![
            Cell::new(&o.name),
            Cell::new(&o.model),
            Cell::new(if o.passed { "pass" } else { "FAIL" }),
        ]);
    }
    println!("{t}");
    for o in outcomes.iter().filter(|o| !o.passed) {
        println!("\n✗ {} ({}):", o.name, o.model);
        if let Some(e) = &o.error {
            println!("  {e}");
        }
        for line in &o.diff {
            println!("  {line}");
        }
    }
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    println!(
        "unit tests — {} passed, {failed} failed",
        outcomes.len() - failed
    );
}
