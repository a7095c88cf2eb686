//! `strata-bench`: what the scripts in `bench/` need beside the `strata` binary.
//!
//! - `gen TABLE --sf N --out DIR`: TPC-H data as CSV with a header, generated in
//!   process by the `tpchgen` crate (`DIR/TABLE.csv`; all 8 tables with `all`).
//! - `floor-ingest CSV OUT`: the floor of bronze ingestion: bare DataFusion reads
//!   TPC-H lineitem CSV with its types and writes uncompressed Parquet (as
//!   Strata writes bronze). Prints seconds.
//! - `gen-landing --sf N --out DIR`: the 8 TPC-H tables as `DIR/TABLE/TABLE.csv`,
//!   the landing folders of the TPC-H medallion project (`bench/tpch/project`).
//! - `gen-increment --sf N --step I --out DIR`: the I-th 1% of new orders and
//!   their lineitems (`DIR/orders/inc-I.csv`, `DIR/lineitem/inc-I.csv`), with
//!   order keys moved past every earlier order's.
//! - `answers --out DIR`: the published TPC-H SF1 answers of the queries the
//!   medallion's gold layer materialises, as `DIR/qN.tbl`.
//! - `floor-tpch --project DIR --out DIR`: the floor of the TPC-H medallion:
//!   bare DataFusion runs the project's bronze ingest and its silver and gold
//!   SQL, writing each table as Parquet and reading it back for the next layer.
//!   Prints seconds.

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, Subcommand};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ScalarValue;
use datafusion::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionContext, col, lit};
use tpchgen::csv::{
    CustomerCsv, LineItemCsv, NationCsv, OrderCsv, PartCsv, PartSuppCsv, RegionCsv, SupplierCsv,
};
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};

#[derive(Parser)]
#[command(about = "Strata's benchmark harness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generates TPC-H data as CSV.
    Gen {
        /// `lineitem`, `orders`, …, or `all`.
        table: String,
        /// Scale factor.
        #[arg(long, default_value_t = 1.0)]
        sf: f64,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Times bare DataFusion reading lineitem CSV and writing Parquet.
    FloorIngest {
        /// The lineitem CSV (with header).
        csv: PathBuf,
        /// Output folder for the Parquet files.
        out: PathBuf,
    },
    /// Generates the 8 TPC-H tables as `OUT/TABLE/TABLE.csv`.
    GenLanding {
        /// Scale factor.
        #[arg(long, default_value_t = 1.0)]
        sf: f64,
        /// The landing folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Generates the STEP-th 1% of new orders and lineitems.
    GenIncrement {
        /// Scale factor of the full load.
        #[arg(long, default_value_t = 1.0)]
        sf: f64,
        /// Which increment (1..=100).
        #[arg(long)]
        step: i32,
        /// The landing folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Writes the TPC-H SF1 answers of Q1, Q3, Q5, Q6, Q10 and Q18.
    Answers {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Times bare DataFusion running the TPC-H medallion project.
    FloorTpch {
        /// The Strata project (its `landing/` and `models/`).
        #[arg(long)]
        project: PathBuf,
        /// Output folder for the Parquet tables.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> Result<(), String> {
    let cli = Cli::parse();
    match cli.command {
        Command::Gen { table, sf, out } => {
            std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            let tables: Vec<&str> = if table == "all" {
                TABLES.to_vec()
            } else {
                vec![table.as_str()]
            };
            for t in tables {
                generate(t, sf, &out)?;
            }
            Ok(())
        }
        Command::FloorIngest { csv, out } => {
            let secs = runtime()?.block_on(floor_ingest(&csv, &out))?;
            println!("{secs:.3}");
            Ok(())
        }
        Command::GenLanding { sf, out } => std::thread::scope(|s| {
            let jobs: Vec<_> = TABLES
                .iter()
                .map(|t| {
                    let dir = out.join(t);
                    s.spawn(move || {
                        std::fs::create_dir_all(&dir)
                            .map_err(|e| format!("{}: {e}", dir.display()))?;
                        generate(t, sf, &dir)
                    })
                })
                .collect();
            jobs.into_iter()
                .try_for_each(|j| j.join().map_err(|_| "a generator panicked".to_string())?)
        }),
        Command::GenIncrement { sf, step, out } => increment(sf, step, &out),
        Command::Answers { out } => answers(&out),
        Command::FloorTpch { project, out } => {
            let secs = runtime()?.block_on(floor_tpch(&project, &out))?;
            println!("{secs:.3}");
            Ok(())
        }
    }
}

/// A multi-threaded Tokio runtime for the floors.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// The files of `dir` ending in `.EXT`, sorted.
fn files_with_ext(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    Ok(files)
}

/// The TPC-H tables.
const TABLES: [&str; 8] = [
    "region", "nation", "part", "supplier", "partsupp", "customer", "orders", "lineitem",
];

/// Writes `DIR/TABLE.csv`.
fn generate(table: &str, sf: f64, dir: &Path) -> Result<(), String> {
    let path = dir.join(format!("{table}.csv"));
    let file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    macro_rules! rows {
        ($gen:ident, $csv:ident) => {{
            writeln!(w, "{}", $csv::header()).map_err(|e| e.to_string())?;
            for row in $gen::new(sf, 1, 1).iter() {
                writeln!(w, "{}", $csv::new(row)).map_err(|e| e.to_string())?;
            }
        }};
    }
    match table {
        "region" => rows!(RegionGenerator, RegionCsv),
        "nation" => rows!(NationGenerator, NationCsv),
        "part" => rows!(PartGenerator, PartCsv),
        "supplier" => rows!(SupplierGenerator, SupplierCsv),
        "partsupp" => rows!(PartSuppGenerator, PartSuppCsv),
        "customer" => rows!(CustomerGenerator, CustomerCsv),
        "orders" => rows!(OrderGenerator, OrderCsv),
        "lineitem" => rows!(LineItemGenerator, LineItemCsv),
        other => {
            return Err(format!(
                "unknown TPC-H table `{other}` (one of {TABLES:?} or all)"
            ));
        }
    }
    w.flush().map_err(|e| e.to_string())
}

/// lineitem's columns with the types the Strata source declares.
fn lineitem_schema() -> Schema {
    let money = DataType::Decimal128(15, 2);
    Schema::new(vec![
        Field::new("l_orderkey", DataType::Int64, true),
        Field::new("l_partkey", DataType::Int64, true),
        Field::new("l_suppkey", DataType::Int64, true),
        Field::new("l_linenumber", DataType::Int64, true),
        Field::new("l_quantity", money.clone(), true),
        Field::new("l_extendedprice", money.clone(), true),
        Field::new("l_discount", money.clone(), true),
        Field::new("l_tax", money, true),
        Field::new("l_returnflag", DataType::Utf8, true),
        Field::new("l_linestatus", DataType::Utf8, true),
        Field::new("l_shipdate", DataType::Date32, true),
        Field::new("l_commitdate", DataType::Date32, true),
        Field::new("l_receiptdate", DataType::Date32, true),
        Field::new("l_shipinstruct", DataType::Utf8, true),
        Field::new("l_shipmode", DataType::Utf8, true),
        Field::new("l_comment", DataType::Utf8, true),
    ])
}

async fn floor_ingest(csv: &Path, out: &Path) -> Result<f64, String> {
    let start = Instant::now();
    let ctx = SessionContext::new();
    let schema = Arc::new(lineitem_schema());
    let df = ctx
        .read_csv(
            csv.to_str().ok_or("the CSV path is not UTF-8")?,
            CsvReadOptions::new().schema(&schema).has_header(true),
        )
        .await
        .map_err(|e| e.to_string())?;
    // Uncompressed, as Strata writes bronze: the same work on both sides.
    let mut parquet = TableParquetOptions::default();
    parquet.global.compression = Some("uncompressed".into());
    df.write_parquet(
        out.to_str().ok_or("the output path is not UTF-8")?,
        DataFrameWriteOptions::new(),
        Some(parquet),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(start.elapsed().as_secs_f64())
}

/// The part of the orders (and their lineitems) one increment adds: 1%.
const INCREMENT_PARTS: i32 = 100;

/// Order keys of increment I are moved up by I times this, past every key a
/// full load (or an earlier increment) has at any scale factor this runs.
const INCREMENT_KEY_OFFSET: i64 = 10_000_000_000;

/// Writes the STEP-th 1% of orders and their lineitems as new orders.
fn increment(sf: f64, step: i32, dir: &Path) -> Result<(), String> {
    if !(1..=INCREMENT_PARTS).contains(&step) {
        return Err(format!("--step must be 1..={INCREMENT_PARTS}"));
    }
    let offset = INCREMENT_KEY_OFFSET * i64::from(step);
    let open = |table: &str| -> Result<BufWriter<std::fs::File>, String> {
        let d = dir.join(table);
        std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        let path = d.join(format!("inc-{step:03}.csv"));
        let f = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(BufWriter::with_capacity(1 << 20, f))
    };
    let mut w = open("orders")?;
    writeln!(w, "{}", OrderCsv::header()).map_err(|e| e.to_string())?;
    for mut row in OrderGenerator::new(sf, step, INCREMENT_PARTS).iter() {
        row.o_orderkey += offset;
        writeln!(w, "{}", OrderCsv::new(row)).map_err(|e| e.to_string())?;
    }
    w.flush().map_err(|e| e.to_string())?;
    let mut w = open("lineitem")?;
    writeln!(w, "{}", LineItemCsv::header()).map_err(|e| e.to_string())?;
    for mut row in LineItemGenerator::new(sf, step, INCREMENT_PARTS).iter() {
        row.l_orderkey += offset;
        writeln!(w, "{}", LineItemCsv::new(row)).map_err(|e| e.to_string())?;
    }
    w.flush().map_err(|e| e.to_string())
}

/// The queries the medallion's gold layer materialises.
const GOLD_QUERIES: [i32; 6] = [1, 3, 5, 6, 10, 18];

/// Writes `DIR/qN.tbl`: the published SF1 answer of each gold query.
fn answers(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for q in GOLD_QUERIES {
        let qa = tpchgen::q_and_a::QueryAndAnswer::new(q, 1.0)?;
        let path = dir.join(format!("q{q}.tbl"));
        std::fs::write(&path, qa.answer().trim_start())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// The columns of a CSV file's header line.
fn header_of(path: &Path) -> Result<Vec<String>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut line = String::new();
    std::io::BufReader::new(f)
        .read_line(&mut line)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(line.trim_end().split(',').map(str::to_string).collect())
}

fn df_err(what: &str) -> impl Fn(datafusion::error::DataFusionError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// The medallion on bare DataFusion: the same bronze columns (all text plus
/// `_ingested_at`, `_source`, `_batch_id`, uncompressed, no text statistics)
/// and the project's own silver and gold SQL, each table written as Parquet
/// (Snappy, as delta-rs writes) and read back for the next layer.
async fn floor_tpch(project: &Path, out: &Path) -> Result<f64, String> {
    let start = Instant::now();
    let ctx = SessionContext::new();
    for schema in ["bronze", "silver", "gold"] {
        ctx.sql(&format!("create schema {schema}"))
            .await
            .map_err(df_err("create schema"))?;
    }
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_micros() as i64;
    for table in TABLES {
        let dir = project.join("landing").join(table);
        let files = files_with_ext(&dir, "csv")?;
        let first = files
            .first()
            .ok_or_else(|| format!("{}: no CSV file", dir.display()))?;
        let schema = Schema::new(
            header_of(first)?
                .into_iter()
                .map(|c| Field::new(c, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        );
        let paths: Vec<String> = files
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let df = ctx
            .read_csv(
                paths,
                CsvReadOptions::new().schema(&schema).has_header(true),
            )
            .await
            .map_err(df_err(table))?;
        let mut cols: Vec<_> = schema.fields().iter().map(|f| col(f.name())).collect();
        cols.push(
            lit(ScalarValue::TimestampMicrosecond(
                Some(now_us),
                Some("UTC".into()),
            ))
            .alias("_ingested_at"),
        );
        cols.push(lit(first.to_string_lossy().into_owned()).alias("_source"));
        cols.push(lit("floor").alias("_batch_id"));
        let df = df.select(cols).map_err(df_err(table))?;
        let mut parquet = TableParquetOptions::default();
        parquet.global.compression = Some("uncompressed".into());
        parquet.global.statistics_enabled = Some("none".into());
        let name = format!("bronze.{table}");
        write_and_register(&ctx, df, &name, out, parquet).await?;
    }
    for layer in ["silver", "gold"] {
        let dir = project.join("models").join(layer);
        let mut models = Vec::new();
        for path in files_with_ext(&dir, "sql")? {
            let sql =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .ok_or_else(|| format!("{}: bad name", path.display()))?;
            models.push((format!("{layer}.{stem}"), sql));
        }
        for (name, sql) in dependency_order(models)? {
            let df = ctx.sql(&sql).await.map_err(df_err(&name))?;
            let mut parquet = TableParquetOptions::default();
            parquet.global.compression = Some("snappy".into());
            write_and_register(&ctx, df, &name, out, parquet).await?;
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

/// `(name, sql)` models of one layer in an order where each comes after the
/// models of the same layer its SQL reads (names sorted within a step).
fn dependency_order(mut models: Vec<(String, String)>) -> Result<Vec<(String, String)>, String> {
    models.sort();
    let names: Vec<String> = models.iter().map(|(n, _)| n.clone()).collect();
    let mut done: Vec<(String, String)> = Vec::new();
    while !models.is_empty() {
        let ready = |(name, sql): &(String, String)| {
            names.iter().all(|other| {
                other == name || done.iter().any(|(d, _)| d == other) || !mentions(sql, other)
            })
        };
        let Some(i) = models.iter().position(ready) else {
            let left: Vec<&str> = models.iter().map(|(n, _)| n.as_str()).collect();
            return Err(format!("models reading each other: {}", left.join(", ")));
        };
        done.push(models.remove(i));
    }
    Ok(done)
}

/// Whether `sql`, outside its comments, names the table `name` (not merely a
/// longer name it begins).
fn mentions(sql: &str, name: &str) -> bool {
    let mut code = String::with_capacity(sql.len());
    let mut rest = sql;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r);
            code.push(' ');
        } else if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r);
            code.push('\n');
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            code.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    let sql = code.as_str();
    sql.match_indices(name).any(|(at, _)| {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let before = sql[..at].chars().next_back().is_none_or(|c| !word(c));
        let after = sql[at + name.len()..]
            .chars()
            .next()
            .is_none_or(|c| !word(c));
        before && after
    })
}

/// Writes `df` as Parquet under `OUT/LAYER/NAME/` and registers it as `name`.
async fn write_and_register(
    ctx: &SessionContext,
    df: datafusion::dataframe::DataFrame,
    name: &str,
    out: &Path,
    parquet: TableParquetOptions,
) -> Result<(), String> {
    let start = Instant::now();
    let dir = out.join(name.replace('.', "/"));
    let dir_str = format!("{}/", dir.to_string_lossy());
    df.write_parquet(
        &dir_str,
        DataFrameWriteOptions::new().with_single_file_output(false),
        Some(parquet),
    )
    .await
    .map_err(df_err(name))?;
    ctx.register_parquet(name, &dir_str, ParquetReadOptions::default())
        .await
        .map_err(df_err(name))?;
    eprintln!("{name}: {:.2} s", start.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_follow_the_models_they_read() {
        let m = |n: &str, sql: &str| (n.to_string(), sql.to_string());
        let order = dependency_order(vec![
            m("gold.q1", "select * from gold.q1_sums"),
            m(
                "gold.q1_sums",
                "/* gold.q1 reads this */ select * from silver.lineitem -- not gold.q1",
            ),
            m("gold.q10", "select 1"),
        ])
        .expect("no cycle");
        let names: Vec<&str> = order.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["gold.q10", "gold.q1_sums", "gold.q1"]);
        let cycle = dependency_order(vec![
            m("gold.a", "select * from gold.b"),
            m("gold.b", "select * from gold.a"),
        ]);
        assert!(cycle.is_err());
    }
}
