//! `strata-bench`: what the scripts in `bench/` need beside the `strata` binary.
//!
//! - `gen TABLE --sf N --out DIR`: TPC-H data as CSV with a header, generated in
//!   process by the `tpchgen` crate (`DIR/TABLE.csv`; all 8 tables with `all`).
//! - `floor-ingest CSV OUT`: the floor of bronze ingestion: bare DataFusion reads
//!   TPC-H lineitem CSV with its types and writes uncompressed Parquet (as
//!   Strata writes bronze). Prints seconds.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, Subcommand};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{CsvReadOptions, SessionContext};
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
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let secs = rt.block_on(floor_ingest(&csv, &out))?;
            println!("{secs:.3}");
            Ok(())
        }
    }
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
