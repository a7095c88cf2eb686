#!/usr/bin/env bash
# SQL serving under load: the shop example at --scale SCALE (default 10) is
# built, `strata serve` answers on a free port, and 32 concurrent clients
# (tokio-postgres, extended protocol, one connection each) run a mix of point
# and aggregate queries on its gold tables for SECONDS (default 30); then the
# same mix runs on bare DataFusion in one process over the same Delta tables
# (the floor). Release build. Prints per side throughput and p50/p99, then:
#   serve: clients=32 seconds=30 strata_qps=<q/s> strata_p50_ms=… strata_p99_ms=… floor_qps=… floor_p50_ms=… floor_p99_ms=… ratio=<floor_qps/strata_qps>
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
scale="${1:-10}"
seconds="${2:-30}"
clients="${CLIENTS:-32}"
work="${BENCH_DIR:-/tmp/strata-bench-serve}"

cargo build --release -p strata-cli -p strata-server --bins --example sql_load >&2
strata="$CARGO_TARGET_DIR/release/strata"
load="$CARGO_TARGET_DIR/release/examples/sql_load"

rm -rf "$work"
"$strata" init "$work" --example shop --scale "$scale" >&2
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
http=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >> "$work/strata.toml" <<TOML

[serve]
http = "127.0.0.1:$http"
sql = "127.0.0.1:$port"

[serve.users.bench]
password = "\${BENCH_PASSWORD}"
TOML
"$strata" run --project "$work" >&2
export BENCH_PASSWORD=bench-secret
"$strata" serve --project "$work" 2>"$work/serve.log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
  sleep 0.2
done
"$load" --port "$port" --user bench --password "$BENCH_PASSWORD" --lake "$work/lake" \
  --clients "$clients" --seconds "$seconds"
