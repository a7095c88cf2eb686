#!/usr/bin/env bash
# Orchestration overhead: a generated project of 1,000 small models (10 roots
# over one source, each other model joining two recent ones, fixed seed), on
# the release build (or the binary in $STRATA_BIN). Prints one line:
#   dag: validate=<s> run=<s> rerun=<s> plan=<s> plan_changed=<s> per_model_ms=<ms> peak_mb=<MB>
# `plan` is `strata plan` after the run (nothing changed); `plan_changed` after
# one early model's SQL changed (so most of the DAG is affected).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
models="${1:-1000}"
work="${BENCH_DIR:-/tmp/strata-bench-dag}"

if [ -n "${STRATA_BIN:-}" ]; then
  strata="$STRATA_BIN"
else
  cargo build --release -p strata-cli >&2
  strata="$CARGO_TARGET_DIR/release/strata"
fi

rm -rf "$work" && mkdir -p "$work/data" "$work/models/silver" "$work/models/gold"
python3 - "$work" "$models" <<'PY'
import random, sys, pathlib
root, n = pathlib.Path(sys.argv[1]), int(sys.argv[2])
random.seed(7)
(root / "strata.toml").write_text('[project]\nname = "dag"\n\n[sources.events]\nformat = "csv"\npath = "data/*.csv"\ncolumns = { id = "bigint", v = "bigint" }\n')
(root / "data/e.csv").write_text("id,v\n" + "".join(f"{i},{i % 7}\n" for i in range(100)))
names = []
for i in range(n):
    layer = "silver" if i < n // 2 else "gold"
    if i < 10:
        sql = "select id, v from bronze.events"
    else:
        a, b = random.sample(names[max(0, len(names) - 200):], k=2)
        sql = f"select a.id, a.v + b.v as v from {a} a join {b} b on a.id = b.id"
    (root / f"models/{layer}/m{i:04d}.sql").write_text(sql + "\n")
    names.append(f"{layer}.m{i:04d}")
PY

t() { /usr/bin/time -f "%e %M" -o "$work/t.txt" "$@" >/dev/null 2>&1; cat "$work/t.txt"; }
read -r validate _ < <(t "$strata" validate --project "$work")
read -r run kb < <(t "$strata" run --project "$work")
read -r rerun _ < <(t "$strata" run --project "$work")
read -r plan _ < <(t "$strata" plan --project "$work")
echo "select id, v + 1 as v from bronze.events" > "$work/models/silver/m0003.sql"
read -r plan_changed _ < <(t "$strata" plan --project "$work")
per=$(python3 -c "print(f'{$run / $models * 1000:.1f}')")
echo "dag: validate=${validate} run=${run} rerun=${rerun} plan=${plan} plan_changed=${plan_changed} per_model_ms=${per} peak_mb=$((kb / 1024)) models=${models}"
