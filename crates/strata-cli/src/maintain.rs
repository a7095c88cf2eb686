//! `strata optimize` and `strata vacuum`: a bar over the tables while they
//! work, then one row per table.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use strata_engine::maintain::{Cleanup, Compaction};

use crate::Format;
use crate::monitor::bytes;
use crate::output::{right, table};

/// A bar over `n` tables (hidden when stderr is not a terminal).
pub fn bar(n: usize, verb: &str) -> ProgressBar {
    let bar = ProgressBar::new(n as u64);
    let template = format!(
        "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} tables  {verb} {{wide_msg}}"
    );
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Shows that work on `table` starts (after the one before it).
pub fn step(bar: &ProgressBar, table: &str) {
    if !bar.message().is_empty() {
        bar.inc(1);
    }
    bar.set_message(table.to_string());
}

/// One row per table compacted (or found compact already).
pub fn print_compactions(done: &[Compaction], format: Format) {
    match format {
        Format::Json => {
            for c in done {
                println!("{}", serde_json::to_value(c).unwrap_or_default());
            }
        }
        Format::Csv => {
            println!(
                "table,files_before,files_removed,files_added,bytes_removed,bytes_added,version,seconds"
            );
            for c in done {
                println!(
                    "{},{},{},{},{},{},{},{:.3}",
                    c.table,
                    c.files_before,
                    c.files_removed,
                    c.files_added,
                    c.bytes_removed,
                    c.bytes_added,
                    c.version.map(|v| v.to_string()).unwrap_or_default(),
                    c.seconds
                );
            }
        }
        Format::Table => {
            let mut t = table(&[
                "table",
                "files before",
                "rewritten",
                "written",
                "files after",
                "bytes rewritten",
                "bytes written",
                "version",
                "seconds",
            ]);
            for c in done {
                let after = c.files_before + c.files_added - c.files_removed.min(c.files_before);
                t.add_row(vec![
                    comfy_table::Cell::new(&c.table),
                    right(c.files_before),
                    right(c.files_removed),
                    right(c.files_added),
                    right(after),
                    right(bytes(c.bytes_removed)),
                    right(bytes(c.bytes_added)),
                    right(c.version.map(|v| v.to_string()).unwrap_or_default()),
                    right(format!("{:.2}", c.seconds)),
                ]);
            }
            println!("{t}");
            let compacted = done.iter().filter(|c| c.files_removed > 0).count();
            let removed: u64 = done.iter().map(|c| c.files_removed).sum();
            let added: u64 = done.iter().map(|c| c.files_added).sum();
            println!(
                "{compacted} of {} tables compacted: {removed} files rewritten into {added}",
                done.len()
            );
        }
    }
}

/// One row per table vacuumed.
pub fn print_cleanups(done: &[Cleanup], format: Format) {
    let dry = done.first().is_some_and(|c| c.dry_run);
    match format {
        Format::Json => {
            for c in done {
                println!("{}", serde_json::to_value(c).unwrap_or_default());
            }
        }
        Format::Csv => {
            println!("table,file,dry_run");
            for c in done {
                for f in &c.files {
                    println!("{},{},{}", c.table, f, c.dry_run);
                }
            }
        }
        Format::Table => {
            let header = if dry {
                "files to delete"
            } else {
                "files deleted"
            };
            let mut t = table(&["table", header, "kept for readers", "seconds"]);
            for c in done {
                let kept = if c.kept_versions.is_empty() {
                    String::new()
                } else {
                    let v: Vec<String> = c.kept_versions.iter().map(|v| v.to_string()).collect();
                    format!("versions {}", v.join(", "))
                };
                t.add_row(vec![
                    comfy_table::Cell::new(&c.table),
                    right(c.files.len()),
                    comfy_table::Cell::new(kept),
                    right(format!("{:.2}", c.seconds)),
                ]);
            }
            println!("{t}");
            let files: usize = done.iter().map(|c| c.files.len()).sum();
            if dry {
                println!(
                    "{files} files would be deleted from {} tables (dry run: `--format csv` lists them)",
                    done.len()
                );
            } else {
                println!("{files} files deleted from {} tables", done.len());
            }
        }
    }
}
