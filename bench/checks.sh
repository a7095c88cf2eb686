#!/usr/bin/env bash
# What the example's checks cost: the shop example at --scale N (default 100)
# run once with its checks and expectations, and once with them removed, on
# the release build. Prints one line:
#   checks: with=<s> without=<s> overhead=<pct>% peak_mb_with=<MB> peak_mb_without=<MB>
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
scale="${1:-100}"
work="${BENCH_DIR:-/tmp/strata-bench-checks}"

cargo build --release -p strata-cli >&2
strata="$CARGO_TARGET_DIR/release/strata"

rm -rf "$work" && mkdir -p "$work"
"$strata" init "$work/with" --example shop --scale "$scale" >&2
cp -r "$work/with" "$work/without"
# Strip every [[checks]] table from the model headers, and the checks/ files.
python3 - "$work/without" <<'PY'
import pathlib, re, sys
root = pathlib.Path(sys.argv[1])
for f in root.glob("models/*/*.sql"):
    text = f.read_text()
    text = re.sub(r"\n\[\[checks\]\].*?(?=\*/)", "\n", text, count=1, flags=re.S)
    f.write_text(text)
for f in root.glob("checks/*.sql"):
    f.unlink()
PY

measure() { # dir -> "seconds peak_mb" of a full run from an empty lake and state
  rm -rf "$1/lake" "$1/.strata"
  cat "$1"/data/*/* > /dev/null # same page cache for both variants
  /usr/bin/time -f "%e %M" -o "$work/time.txt" "$strata" run --project "$1" >"$1.log" 2>&1
  read -r secs kb < "$work/time.txt"
  echo "$secs $((kb / 1024))"
}
# Alternate the variants twice and keep each one's faster run.
best() { python3 -c "import sys; a=sys.argv[1:]; print(min(a, key=float))" "$@"; }
read -r a1 m_without < <(measure "$work/without")
read -r b1 m_with < <(measure "$work/with")
read -r a2 _ < <(measure "$work/without")
read -r b2 _ < <(measure "$work/with")
t_without=$(best "$a1" "$a2")
t_with=$(best "$b1" "$b2")
overhead=$(python3 -c "print(f'{($t_with / $t_without - 1) * 100:.1f}')")
echo "checks: with=${t_with} without=${t_without} overhead=${overhead}% peak_mb_with=${m_with} peak_mb_without=${m_without} scale=${scale} runs=${a1},${a2}/${b1},${b2}"
