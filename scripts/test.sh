#!/usr/bin/env bash
# Runs every test: installs what the tests need (the Python `deltalake`
# reader for the interop test), makes sure PostgreSQL and MariaDB are up, then
# `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"

# The independent Delta reader used by the interop test, the SMTP server
# (aiosmtpd) the e-mail alert tests deliver to, the OpenAPI validator, and what
# the OpenLineage receiver (crates/strata-cli/tests/openlineage/receiver.py)
# validates events with: openlineage-python's spec model, jsonschema and the
# checkers of its date-time and uri formats; the S3 emulator (moto's server)
# and the clients the object-storage tests put objects with.
if ! python3 -c 'import deltalake, pyarrow, aiosmtpd, openapi_spec_validator, psycopg, openlineage.client.generated.base, jsonschema, referencing, rfc3339_validator, rfc3986_validator, moto.server, flask_cors, boto3, azure.storage.blob' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
fi

# promtool (Debian's prometheus package) lints the /metrics scrape.
if ! command -v promtool >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null \
    || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null; }
fi

# The dashboard tests drive Debian's Chromium with playwright-core (npm,
# pinned in crates/strata-cli/tests/dashboard/package-lock.json).
if ! command -v chromium >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null \
    || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null; }
fi
if [ ! -d crates/strata-cli/tests/dashboard/node_modules/playwright-core ]; then
  (cd crates/strata-cli/tests/dashboard && npm ci --no-audit --no-fund --silent)
fi

# Azurite (npm, pinned in crates/strata-cli/tests/storage/package-lock.json) is
# the Azure Blob emulator of the object-storage tests.
if [ ! -x crates/strata-cli/tests/storage/node_modules/.bin/azurite-blob ]; then
  (cd crates/strata-cli/tests/storage && npm ci --no-audit --no-fund --silent)
fi

# psql is the SQL endpoint's client in the serving tests.
if ! command -v psql >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-client >/dev/null
fi

# PostgreSQL backs the state-store tests; start it if this machine stopped it.
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi

# MariaDB backs the MySQL-source tests; start it if this machine stopped it.
if command -v mariadb-admin >/dev/null && ! mariadb-admin -h 127.0.0.1 -u root ping >/dev/null 2>&1; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  for _ in $(seq 1 30); do mariadb-admin -h 127.0.0.1 -u root ping >/dev/null 2>&1 && break; sleep 1; done
fi

cargo test --workspace --no-fail-fast
