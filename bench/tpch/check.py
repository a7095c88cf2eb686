"""Checks the TPC-H medallion's gold tables: Strata's (Delta, read by the
Python `deltalake` reader) must equal the floor's (Parquet) exactly, DuckDB's
within a cent, and at scale factor 1 the published TPC-H answers within a cent.

Usage: check.py --strata LAKE --floor DIR [--duckdb DIR] [--answers DIR]
Prints one line per table and exits 1 on any difference."""
import argparse
import datetime
import decimal
import pathlib
import re
import sys

import pyarrow.parquet as pq
from deltalake import DeltaTable

GOLD = ["q1", "q3", "q5", "q6", "q10", "q18", "revenue_by_region_month"]
NUMBER = re.compile(r"^-?\d+\.\d+$")


def text(v, exact):
    if v is None:
        return ""
    if isinstance(v, (decimal.Decimal, float)):
        return str(v) if exact else f"{float(v):.2f}"
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    return str(v).strip()


def rows_of(table, exact):
    cols = table.to_pydict()
    names = list(cols)
    n = table.num_rows
    return [tuple(text(cols[c][i], exact) for c in names) for i in range(n)]


def answer_rows(path):
    lines = [l for l in path.read_text().splitlines() if l.strip()]
    return [tuple(v.strip() for v in l.split("|")) for l in lines[1:]]


def key(row):
    """Rows sort by their non-decimal values (keys, names, dates): unique in every gold table."""
    return tuple(v for v in row if not NUMBER.match(v))


def close(a, b):
    if a == b:
        return True
    if NUMBER.match(a) or NUMBER.match(b):
        try:
            return abs(float(a) - float(b)) <= 0.011
        except ValueError:
            return False
    return False


def same(got, want, exact):
    if len(got) != len(want):
        return f"{len(got)} rows, expected {len(want)}"
    for g, w in zip(sorted(got, key=key), sorted(want, key=key)):
        if len(g) != len(w) or not all((x == y) if exact else close(x, y) for x, y in zip(g, w)):
            return f"row {g} differs from {w}"
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--strata", required=True, type=pathlib.Path)
    p.add_argument("--floor", required=True, type=pathlib.Path)
    p.add_argument("--duckdb", type=pathlib.Path)
    p.add_argument("--answers", type=pathlib.Path)
    a = p.parse_args()
    bad = 0
    for t in GOLD:
        strata = DeltaTable(str(a.strata / "gold" / t)).to_pyarrow_table()
        floor = pq.read_table(a.floor / "gold" / t)
        notes = []
        problem = same(rows_of(strata, True), rows_of(floor, True), True)
        notes.append(f"floor: {problem or 'equal'}")
        bad += problem is not None
        if a.duckdb:
            duck = pq.read_table(a.duckdb / "gold" / f"{t}.parquet")
            problem = same(rows_of(strata, False), rows_of(duck, False), False)
            notes.append(f"duckdb: {problem or 'equal within a cent'}")
            bad += problem is not None
        answer = a.answers / f"{t}.tbl" if a.answers else None
        if answer and answer.exists():
            problem = same(rows_of(strata, False), answer_rows(answer), False)
            notes.append(f"TPC-H answer: {problem or 'equal within a cent'}")
            bad += problem is not None
        print(f"  gold.{t} ({strata.num_rows} rows): " + "; ".join(notes))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
