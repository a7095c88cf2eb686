"""The TPC-H medallion on DuckDB (the peer): the same bronze columns and the
project's own silver and gold SQL, each table written as Parquet and read back
for the next layer, the SQL run as it is. Usage: duckdb_medallion.py PROJECT
OUT. Prints seconds."""
import pathlib
import re
import sys
import time

import duckdb

TABLES = ["region", "nation", "part", "supplier", "partsupp", "customer", "orders", "lineitem"]


def dependency_order(layer, paths):
    """The models of one layer, each after the models of the same layer its SQL reads."""
    models = [(p, p.read_text()) for p in paths]
    code = {p.stem: re.sub(r"/\*.*?\*/|--[^\n]*", " ", sql, flags=re.S) for p, sql in models}
    names = {p.stem for p, _ in models}
    done, order = set(), []
    while models:
        for i, (p, sql) in enumerate(models):
            reads = {n for n in names - {p.stem} if re.search(rf"\b{layer}\.{n}\b", code[p.stem])}
            if reads <= done:
                order.append(models.pop(i))
                done.add(p.stem)
                break
        else:
            sys.exit(f"models reading each other: {[p.stem for p, _ in models]}")
    return order


def main(project: pathlib.Path, out: pathlib.Path) -> None:
    start = time.time()
    con = duckdb.connect()
    for schema in ["bronze", "silver", "gold"]:
        con.sql(f"create schema {schema}")
        (out / schema).mkdir(parents=True, exist_ok=True)
    for t in TABLES:
        files = sorted((project / "landing" / t).glob("*.csv"))
        target = out / "bronze" / f"{t}.parquet"
        con.sql(
            f"copy (select *, now() as _ingested_at, '{files[0]}' as _source, 'duckdb' as _batch_id "
            f"from read_csv({[str(f) for f in files]}, header = true, all_varchar = true)) "
            f"to '{target}' (format parquet, compression uncompressed)"
        )
        con.sql(f"create view bronze.{t} as select * from read_parquet('{target}')")
    for layer in ["silver", "gold"]:
        for m, sql in dependency_order(layer, sorted((project / "models" / layer).glob("*.sql"))):
            target = out / layer / f"{m.stem}.parquet"
            con.sql(f"copy ({sql}) to '{target}' (format parquet, compression snappy)")
            con.sql(f"create view {layer}.{m.stem} as select * from read_parquet('{target}')")
    print(f"{time.time() - start:.3f}")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]).resolve(), pathlib.Path(sys.argv[2]).resolve())
