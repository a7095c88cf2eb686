#!/usr/bin/env bash
# Builds Strata (release) and runs the example project end to end on the
# embedded default (lake on local disk, state in SQLite):
#   scripts/demo.sh [DIR] [SCALE]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
dir="${1:-/tmp/strata-shop}"
scale="${2:-1}"

cargo build --release -p strata-cli
strata="$CARGO_TARGET_DIR/release/strata"

rm -rf "$dir"
"$strata" init "$dir" --example shop --scale "$scale"
"$strata" validate --project "$dir"
"$strata" run --project "$dir"
"$strata" sql --project "$dir" "select order_date, region, orders, revenue from gold.daily_revenue order by order_date, region limit 10"
echo
echo "Done. Try: $strata sql --project $dir \"select * from gold.customer_lifetime_value order by lifetime_value desc limit 5\""
