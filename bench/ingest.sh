#!/usr/bin/env bash
# Bronze ingestion throughput: TPC-H lineitem at scale factor SF (default 1),
# generated in-process by the tpchgen crate as one CSV file, ingested by
# `strata run` (a CSV source with declared types: row accounting, quarantine,
# metadata columns, a Delta commit) beside, in the same run,
#   floor:  bare DataFusion reading the same CSV with the same types and writing Parquet
#   duckdb: DuckDB (Python package) doing the same
# all three writing uncompressed Parquet (Strata's bronze files are).
# Release builds (or STRATA_BIN / BENCH_BIN). Prints one line:
#   ingest: sf=<n> mb=<MB> strata=<s> floor=<s> duckdb=<s> ratio=<strata/floor> vs_duckdb=<strata/duckdb> strata_mbps=<MB/s> floor_mbps=<MB/s> throughput_vs_floor=<x> peak_mb=<MB>
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
sf="${1:-1}"
work="${BENCH_DIR:-/tmp/strata-bench-ingest}"

if [ -z "${STRATA_BIN:-}" ] || [ -z "${BENCH_BIN:-}" ]; then
  cargo build --release -p strata-cli -p strata-bench >&2
fi
strata="${STRATA_BIN:-$CARGO_TARGET_DIR/release/strata}"
bench="${BENCH_BIN:-$CARGO_TARGET_DIR/release/strata-bench}"
python3 -c 'import duckdb' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt >&2

data="$work/data-sf$sf"
if [ ! -s "$data/lineitem.csv" ]; then
  mkdir -p "$data"
  "$bench" gen lineitem --sf "$sf" --out "$data"
fi
csv="$data/lineitem.csv"
mb=$(python3 -c "import os; print(f'{os.path.getsize(\"$csv\") / 1e6:.0f}')")

t() { /usr/bin/time -f "%e %M" -o "$work/t.txt" "$@" >/dev/null 2>"$work/err.txt" || { cat "$work/err.txt" >&2; exit 1; }; cat "$work/t.txt"; }

# The floor: bare DataFusion, CSV → Parquet.
rm -rf "$work/floor" && mkdir -p "$work/floor"
read -r floor _ < <(t "$bench" floor-ingest "$csv" "$work/floor")

# The peer: DuckDB, CSV → Parquet, same types.
rm -rf "$work/duck" && mkdir -p "$work/duck"
read -r duck _ < <(t python3 - "$csv" "$work/duck/lineitem.parquet" <<'PY'
import sys, duckdb
cols = {"l_orderkey": "BIGINT", "l_partkey": "BIGINT", "l_suppkey": "BIGINT", "l_linenumber": "BIGINT",
        "l_quantity": "DECIMAL(15,2)", "l_extendedprice": "DECIMAL(15,2)", "l_discount": "DECIMAL(15,2)",
        "l_tax": "DECIMAL(15,2)", "l_returnflag": "VARCHAR", "l_linestatus": "VARCHAR", "l_shipdate": "DATE",
        "l_commitdate": "DATE", "l_receiptdate": "DATE", "l_shipinstruct": "VARCHAR", "l_shipmode": "VARCHAR",
        "l_comment": "VARCHAR"}
duckdb.sql(f"COPY (SELECT * FROM read_csv('{sys.argv[1]}', header = true, columns = {cols})) TO '{sys.argv[2]}' (FORMAT parquet, COMPRESSION uncompressed)")
PY
)

# Strata: a project whose one source is the lineitem CSV.
proj="$work/project"
rm -rf "$proj" && mkdir -p "$proj"
cat > "$proj/strata.toml" <<TOML
[project]
name = "ingest"

[sources.lineitem]
format = "csv"
path = "$csv"
columns = { l_orderkey = "bigint", l_partkey = "bigint", l_suppkey = "bigint", l_linenumber = "bigint", l_quantity = "decimal(15,2)", l_extendedprice = "decimal(15,2)", l_discount = "decimal(15,2)", l_tax = "decimal(15,2)", l_returnflag = "varchar", l_linestatus = "varchar", l_shipdate = "date", l_commitdate = "date", l_receiptdate = "date", l_shipinstruct = "varchar", l_shipmode = "varchar", l_comment = "varchar" }
TOML
read -r strata_s kb < <(t "$strata" run --project "$proj")
rows=$("$strata" sql --project "$proj" --format csv "select count(*) from bronze.lineitem" | tail -n1)

python3 - "$sf" "$mb" "$strata_s" "$floor" "$duck" "$kb" "$rows" <<'PY'
import sys
sf, mb, s, f, d, kb, rows = sys.argv[1:]
mb, s, f, d = float(mb), float(s), float(f), float(d)
print(f"ingest: sf={sf} mb={mb:.0f} rows={rows} strata={s:.2f} floor={f:.2f} duckdb={d:.2f} ratio={s/f:.2f} vs_duckdb={s/d:.2f} "
      f"strata_mbps={mb/s:.0f} floor_mbps={mb/f:.0f} throughput_vs_floor={f/s:.2f} peak_mb={int(kb)//1024}")
PY
