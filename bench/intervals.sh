#!/usr/bin/env bash
# Interval bookkeeping at scale: a partitioned model (hourly grain) with
# 100,000 recorded intervals (~11.4 years; every 97th failed, every 101st
# missing), on the release build. Times `strata status` and a backfill plan
# (`--dry-run`) over the whole range. Prints one line:
#   intervals: n=<count> status=<s> backfill_plan=<s> to_run=<count>
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
n="${1:-100000}"
work="${BENCH_DIR:-/tmp/strata-bench-intervals}"

cargo build --release -p strata-cli >&2
strata="$CARGO_TARGET_DIR/release/strata"

rm -rf "$work" && mkdir -p "$work/data" "$work/models/silver"
cat > "$work/strata.toml" <<'TOML'
[project]
name = "intervals"
[sources.ev]
format = "csv"
path = "data/*.csv"
columns = { id = "bigint", at = "timestamp" }
TOML
printf 'id,at\n1,2020-01-01T00:30:00\n' > "$work/data/ev.csv"
cat > "$work/models/silver/hourly.sql" <<'SQL'
/*
materialized = "incremental"
strategy = "replace_range"
partition_by = "at"
grain = "hour"
*/
select id, at from bronze.ev where at >= :start and at < :end
SQL
"$strata" status --project "$work" >/dev/null # creates and migrates the state store
python3 - "$work/.strata/state.db" "$n" <<'PY'
import sqlite3, sys, datetime
db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
t0 = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
fmt = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
rows = []
for i in range(n):
    if i % 101 == 50:
        continue  # missing
    s = t0 + datetime.timedelta(hours=i)
    status = "failed" if i % 97 == 13 else "done"
    rows.append(("silver.hourly", fmt(s), fmt(s + datetime.timedelta(hours=1)), status, 1, "bench", fmt(s), None, 1))
c.executemany("INSERT INTO intervals VALUES (?,?,?,?,?,?,?,?,?)", rows)
c.commit()
PY
end=$(python3 -c "import datetime; print((datetime.datetime(2020,1,1)+datetime.timedelta(hours=$n)).strftime('%Y-%m-%dT%H:%M:%SZ'))")
t() { /usr/bin/time -f "%e" -o "$work/t.txt" "$@" > "$work/out.txt" 2>&1; cat "$work/t.txt"; }
status=$(t "$strata" status --project "$work")
grep -m1 "intervals of" "$work/out.txt" >&2
plan=$(t "$strata" backfill --project "$work" --start 2020-01-01 --end "$end" --select silver.hourly --dry-run)
to_run=$(grep "silver.hourly" "$work/out.txt" | python3 -c "import sys; print(sys.stdin.read().split('┆')[4].strip())")
echo "intervals: n=${n} status=${status} backfill_plan=${plan} to_run=${to_run}"
