#!/usr/bin/env python3
"""A mock of the Strata HTTP API (see ../openapi.json), for developing the dashboard.

Standard library only. Serves the dashboard at / and /assets/<file> from
../dashboard and answers every route of openapi.json with fixture data for a
project named `example`. Table rows live in an in-memory SQLite database, so
the `where`, `order_by`, `by` and `metric` parameters behave like real SQL.

    python3 mock_api.py [--port 8765] [--host 127.0.0.1]

Tokens: `Bearer admin-token` (scope admin), `Bearer read-token` (scope read).
POST /api/runs starts a run that reports `running` for about 2 s, then `success`.

This is a development tool only; it is not shipped in the binary.
"""

import argparse
import json
import mimetypes
import os
import random
import re
import sqlite3
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

HERE = os.path.dirname(os.path.abspath(__file__))
DASHBOARD_DIR = os.path.normpath(os.path.join(HERE, "..", "dashboard"))
OPENAPI = os.path.normpath(os.path.join(HERE, "..", "openapi.json"))

TOKENS = {
    "admin-token": {"name": "admin", "scope": "admin"},
    "read-token": {"name": "analyst", "scope": "read"},
}

LOCK = threading.RLock()
NOW0 = datetime.now(timezone.utc).replace(microsecond=0)


def now():
    return datetime.now(timezone.utc)


def ts(t):
    """RFC 3339 with microseconds and Z, as the state store writes them."""
    if t is None:
        return None
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def run_id_at(t):
    return t.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


# ---------------------------------------------------------------------------
# The project: tables, their docs, checks and lineage.

def col(name, ty, nullable=True, description=None):
    return {"name": name, "ty": ty, "nullable": nullable, "description": description}


TABLES = {
    "bronze.orders": {
        "layer": "bronze", "kind": "source",
        "description": "Orders exported by the shop, one NDJSON file per day.",
        "owner": "data-platform", "tags": ["raw", "orders"],
        "defined_in": "strata.toml [sources.orders]",
        "sql": "",
        "columns": [
            col("order_id", "bigint"), col("customer_id", "bigint"), col("product_id", "bigint"),
            col("quantity", "bigint"), col("unit_price", "decimal(10,2)"), col("status", "string"),
            col("order_ts", "timestamp"),
            col("_ingested_at", "timestamp", False, "When the row was ingested."),
            col("_source", "string", False, "The file the row came from."),
            col("_batch_id", "string", False, "The ingest batch."),
        ],
        "upstream": [],
        "checks": [
            {"name": "row_count(min=1)", "kind": "row_count", "severity": "warn", "on_failure": "warn"},
        ],
        "products": [], "partitioning": None, "sla": 26 * 3600, "sla_from": "source",
        "materialized": "ingest",
    },
    "bronze.customers": {
        "layer": "bronze", "kind": "source",
        "description": "Daily full snapshots of the customer table.",
        "owner": "data-platform", "tags": ["raw", "customers", "pii"],
        "defined_in": "strata.toml [sources.customers]",
        "sql": "",
        "columns": [
            col("customer_id", "bigint"), col("name", "string"), col("email", "string"),
            col("region", "string"), col("segment", "string"), col("signup_date", "date"),
            col("_ingested_at", "timestamp", False), col("_source", "string", False),
            col("_batch_id", "string", False),
        ],
        "upstream": [],
        "checks": [],
        "products": [], "partitioning": None, "sla": 26 * 3600, "sla_from": "source",
        "materialized": "ingest",
    },
    "silver.orders": {
        "layer": "silver", "kind": "model",
        "description": "One row per order: typed and deduplicated; the latest file wins. Orders without a customer or with a quantity of zero or less are quarantined in silver.orders_quarantine.",
        "owner": "data-platform", "tags": ["orders"],
        "defined_in": "models/silver/orders.sql",
        "sql": """/*
materialized = "incremental"
strategy = "merge"
unique_key = ["order_id"]
[[checks]]
not_null = ["order_id", "customer_id"]
[[checks]]
unique = ["order_id"]
[[checks]]
expression = "quantity > 0"
on_fail = "quarantine"
*/
select
    o.order_id,
    o.customer_id,
    o.product_id,
    o.quantity,
    o.unit_price,
    o.quantity * o.unit_price as revenue,
    o.status,
    o.order_ts,
    cast(o.order_ts as date) as order_date
from bronze.orders o
qualify row_number() over (partition by o.order_id order by o._ingested_at desc) = 1""",
        "columns": [
            col("order_id", "bigint", False, "The shop's order number."),
            col("customer_id", "bigint", False, "References silver.customers."),
            col("product_id", "bigint"), col("quantity", "bigint", False),
            col("unit_price", "decimal(10,2)"),
            col("revenue", "decimal(20,2)", True, "quantity × unit_price"),
            col("status", "string", True, "placed, shipped, delivered or cancelled"),
            col("order_ts", "timestamp"), col("order_date", "date"),
        ],
        "upstream": ["bronze.orders"],
        "checks": [
            {"name": "not_null(order_id, customer_id)", "kind": "not_null", "severity": "error", "on_failure": "fail"},
            {"name": "unique(order_id)", "kind": "unique", "severity": "error", "on_failure": "fail"},
            {"name": "quantity > 0", "kind": "row", "severity": "quarantine", "on_failure": "quarantine"},
        ],
        "products": [], "partitioning": None, "sla": None, "sla_from": None,
        "materialized": "incremental",
    },
    "silver.customers": {
        "layer": "silver", "kind": "model",
        "description": "The current version of every customer, with e-mail addresses normalised.",
        "owner": "data-platform", "tags": ["customers", "pii"],
        "defined_in": "models/silver/customers.sql",
        "sql": """/*
materialized = "table"
[[checks]]
unique = ["customer_id"]
[[checks]]
accepted_values = { column = "segment", values = ["consumer", "smb", "enterprise"] }
*/
select customer_id, name, lower(trim(email)) as email, region, segment, signup_date
from bronze.customers
qualify row_number() over (partition by customer_id order by _ingested_at desc) = 1""",
        "columns": [
            col("customer_id", "bigint", False), col("name", "string"), col("email", "string"),
            col("region", "string", True, "EU, NA, APAC or LATAM"), col("segment", "string"),
            col("signup_date", "date"),
        ],
        "upstream": ["bronze.customers"],
        "checks": [
            {"name": "unique(customer_id)", "kind": "unique", "severity": "error", "on_failure": "fail"},
            {"name": "accepted_values(segment)", "kind": "accepted_values", "severity": "warn", "on_failure": "warn"},
        ],
        "products": [], "partitioning": None, "sla": None, "sla_from": None,
        "materialized": "table",
    },
    "gold.daily_revenue": {
        "layer": "gold", "kind": "model",
        "description": "Orders and revenue per day and region, for finance and sales dashboards.",
        "owner": "analytics", "tags": ["finance", "kpi"],
        "defined_in": "models/gold/daily_revenue.sql",
        "sql": """/*
materialized = "incremental"
strategy = "replace_range"
partition_by = "day"
grain = "day"
[[checks]]
not_null = ["day", "region"]
[[checks]]
range = { column = "revenue", min = 0 }
*/
select
    o.order_date as day,
    c.region,
    count(*) as orders,
    count(distinct o.customer_id) as customers,
    sum(o.revenue) as revenue
from silver.orders o
join silver.customers c using (customer_id)
where o.status <> 'cancelled'
  and o.order_ts >= :start and o.order_ts < :end
group by 1, 2""",
        "columns": [
            col("day", "date", False), col("region", "string", False),
            col("orders", "bigint", False), col("customers", "bigint", False),
            col("revenue", "decimal(20,2)", False, "Revenue of non-cancelled orders."),
        ],
        "upstream": ["silver.orders"],
        "checks": [
            {"name": "not_null(day, region)", "kind": "not_null", "severity": "error", "on_failure": "fail"},
            {"name": "range(revenue >= 0)", "kind": "range", "severity": "error", "on_failure": "fail"},
        ],
        "products": ["revenue"], "partitioning": "day (daily)", "sla": 26 * 3600,
        "sla_from": "product revenue", "materialized": "replace_range",
    },
    "gold.customer_ltv": {
        "layer": "gold", "kind": "model",
        "description": "Lifetime value per customer: orders, revenue, first and last order.",
        "owner": "analytics", "tags": ["customers", "kpi"],
        "defined_in": "models/gold/customer_ltv.sql",
        "sql": """/*
materialized = "table"
[[checks]]
relationships = { column = "customer_id", to = "silver.customers.customer_id" }
severity = "error"
*/
select
    c.customer_id, c.name, c.region, c.segment,
    count(o.order_id) as orders,
    coalesce(sum(o.revenue), 0) as lifetime_value,
    min(o.order_date) as first_order,
    max(o.order_date) as last_order
from silver.customers c
left join silver.orders o using (customer_id)
group by 1, 2, 3, 4""",
        "columns": [
            col("customer_id", "bigint", False), col("name", "string"), col("region", "string"),
            col("segment", "string"), col("orders", "bigint", False),
            col("lifetime_value", "decimal(20,2)", False), col("first_order", "date"),
            col("last_order", "date"),
        ],
        "upstream": ["silver.orders", "silver.customers"],
        "checks": [
            {"name": "relationships(customer_id -> silver.customers)", "kind": "relationships", "severity": "error", "on_failure": "fail"},
        ],
        "products": ["customer_insights"], "partitioning": None, "sla": None, "sla_from": None,
        "materialized": "table",
    },
}
ORDER = list(TABLES)  # upstream first
for _n, _t in TABLES.items():
    _t["downstream"] = [m for m, t in TABLES.items() if _n in t["upstream"]]

PRODUCTS = [
    {"name": "revenue",
     "description": "Orders and revenue per day and region, for finance and sales dashboards.",
     "owner": "analytics", "consumers": ["finance", "sales-ops"],
     "models": ["gold.daily_revenue"], "freshness": "26h", "access": ["sql", "dashboard"]},
    {"name": "customer_insights",
     "description": "Customer lifetime value for the CRM team and the marketing <segment> model.",
     "owner": "crm-analytics", "consumers": ["crm", "marketing"],
     "models": ["gold.customer_ltv"], "freshness": None, "access": ["sql", "api"]},
]


# ---------------------------------------------------------------------------
# Table data in SQLite.

def sqlname(table):
    return table.replace(".", "__")


def build_db():
    rnd = random.Random(42)
    db = sqlite3.connect(":memory:", check_same_thread=False)
    first = ["Ada", "Ben", "Chloé", "Dmitri", "Eve", "Farah", "Goran", "Hana", "Ivan", "Jun",
             "Kofi", "Lena", "Mateo", "Noor", "Olga", "Priya", "Quinn", "Rafael", "Sara", "Tomás"]
    last = ["Lovelace", "Okafor", "Martin", "Ivanov", "Tanaka", "Haddad", "Novak", "Suzuki",
            "Petrov", "Kim", "Mensah", "Schulz", "García", "Rahman", "Smirnova", "Patel"]
    regions = ["EU", "NA", "APAC", "LATAM"]
    segments = ["consumer", "smb", "enterprise"]
    db.execute("create table bronze__customers (customer_id integer, name text, email text, region text, segment text, signup_date text, _ingested_at text, _source text, _batch_id text)")
    customers = []
    for cid in range(1, 61):
        n = f"{rnd.choice(first)} {rnd.choice(last)}"
        em = f" {n.split()[0].upper()}.{cid}@Example.com "
        reg = rnd.choice(regions)
        seg = rnd.choices(segments, [6, 3, 1])[0]
        signup = (NOW0 - timedelta(days=rnd.randint(20, 700))).date().isoformat()
        customers.append((cid, n, em, reg, seg, signup))
    day0 = (NOW0 - timedelta(days=1)).replace(hour=1, minute=0, second=0)
    for c in customers:
        db.execute("insert into bronze__customers values (?,?,?,?,?,?,?,?,?)",
                   c + (ts(day0), f"data/customers/customers_{day0.date()}.csv", "b-c-" + day0.strftime("%Y%m%d")))
    # a duplicate (older snapshot) and a customer with a bad segment
    db.execute("insert into bronze__customers values (7, 'Old Name', 'old@example.com', 'EU', 'consumer', '2024-01-01', ?, 'data/customers/customers_old.csv', 'b-c-old')", (ts(day0 - timedelta(days=30)),))
    db.execute("insert into bronze__customers values (61, 'Zed <script>alert(1)</script>', 'zed@example.com', 'EU', 'VIP', '2025-01-01', ?, 'data/customers/customers_x.csv', 'b-c-x')", (ts(day0),))

    db.execute("create table bronze__orders (order_id integer, customer_id integer, product_id integer, quantity integer, unit_price real, status text, order_ts text, _ingested_at text, _source text, _batch_id text)")
    oid = 1000
    statuses = ["placed", "shipped", "delivered", "delivered", "delivered", "cancelled"]
    for d in range(14, 0, -1):
        day = (NOW0 - timedelta(days=d)).replace(hour=0, minute=0, second=0)
        if d == 9:
            continue  # the missing day
        ingested = ts(day + timedelta(days=1, hours=2))
        src = f"data/orders/orders_{day.date()}.ndjson"
        for _ in range(rnd.randint(25, 45)):
            oid += 1
            cid = rnd.randint(1, 60)
            q = rnd.choice([1, 1, 1, 2, 2, 3, 5])
            price = round(rnd.choice([9.99, 14.5, 19.99, 24.0, 49.9, 99.0, 129.0]), 2)
            t = day + timedelta(seconds=rnd.randint(0, 86399))
            row = (oid, cid, rnd.randint(1, 40), q, price, rnd.choice(statuses),
                   t.strftime("%Y-%m-%dT%H:%M:%S"), ingested, src, "b-o-" + day.strftime("%Y%m%d"))
            db.execute("insert into bronze__orders values (?,?,?,?,?,?,?,?,?,?)", row)
            if rnd.random() < 0.03:  # a duplicate delivery of the same order
                db.execute("insert into bronze__orders values (?,?,?,?,?,?,?,?,?,?)", row)
        # flawed rows
        if d % 4 == 0:
            oid += 1
            db.execute("insert into bronze__orders values (?,?,?,?,?,?,?,?,?,?)",
                       (oid, None, 3, 1, 9.99, "placed", (day + timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M:%S"), ingested, src, "b-o-" + day.strftime("%Y%m%d")))
        if d % 5 == 0:
            oid += 1
            db.execute("insert into bronze__orders values (?,?,?,?,?,?,?,?,?,?)",
                       (oid, 5, 3, 0, 9.99, "placed", (day + timedelta(hours=13)).strftime("%Y-%m-%dT%H:%M:%S"), ingested, src, "b-o-" + day.strftime("%Y%m%d")))

    db.executescript("""
    create table silver__customers as
      select customer_id, name, lower(trim(email)) as email, region, segment, signup_date
      from (select *, row_number() over (partition by customer_id order by _ingested_at desc) rn from bronze__customers)
      where rn = 1 order by customer_id;
    create table silver__orders as
      select order_id, customer_id, product_id, quantity, unit_price,
             round(quantity * unit_price, 2) as revenue, status, order_ts, substr(order_ts, 1, 10) as order_date
      from (select *, row_number() over (partition by order_id order by _ingested_at desc) rn from bronze__orders)
      where rn = 1 and customer_id is not null and quantity > 0 order by order_id;
    create table gold__daily_revenue as
      select o.order_date as day, c.region, count(*) as orders, count(distinct o.customer_id) as customers,
             round(sum(o.revenue), 2) as revenue
      from silver__orders o join silver__customers c using (customer_id)
      where o.status <> 'cancelled' group by 1, 2 order by 1, 2;
    create table gold__customer_ltv as
      select c.customer_id, c.name, c.region, c.segment, count(o.order_id) as orders,
             round(coalesce(sum(o.revenue), 0), 2) as lifetime_value,
             min(o.order_date) as first_order, max(o.order_date) as last_order
      from silver__customers c left join silver__orders o using (customer_id)
      group by 1, 2, 3, 4 order by 1;
    """)
    return db


DB = build_db()


def table_count(table):
    return DB.execute(f'select count(*) from "{sqlname(table)}"').fetchone()[0]


def col_types(table):
    return {c["name"]: c["ty"] for c in TABLES[table]["columns"]}


def rewrite_sql(sql):
    """Map `layer.table` names in user SQL to the SQLite tables."""
    for t in sorted(TABLES, key=len, reverse=True):
        sql = re.sub(r"\b" + re.escape(t) + r"\b", sqlname(t), sql)
    return sql


# ---------------------------------------------------------------------------
# Runs, tasks, check results, Delta versions.

RUNS = []          # newest last; each has "tasks"
CHECK_RESULTS = [] # oldest first
VERSIONS = {t: [] for t in TABLES}
TABLE_ROWS = {t: 0 for t in TABLES}
# run durations (seconds) per table in a nightly run
BASE_DURATION = {"bronze.orders": 4.2, "bronze.customers": 1.6, "silver.orders": 6.5,
                 "silver.customers": 1.9, "gold.daily_revenue": 3.1, "gold.customer_ltv": 2.4}
ERRORS = {
    "silver.orders": "check not_null(order_id, customer_id) failed: 2 rows where customer_id is null (models/silver/orders.sql:6:1)\nsample: [{\"order_id\": 1071, \"customer_id\": null}]",
    "gold.customer_ltv": "check relationships(customer_id -> silver.customers) failed: 1 row whose customer_id has no match in silver.customers\nsample: [{\"customer_id\": 61}]",
}


def select_tables(selection):
    """A tiny version of `--select`: names, +name (with upstream), name+ (with downstream)."""
    if not selection or not selection.strip():
        return list(ORDER)
    out = set()
    for part in re.split(r"[\s,]+", selection.strip()):
        if not part:
            continue
        up = part.startswith("+")
        down = part.endswith("+")
        name = part.strip("+")
        if name not in TABLES:
            raise ValueError(f"unknown table `{name}` in selection `{selection}`; known tables: {', '.join(ORDER)}")
        out.add(name)
        if up:
            stack = [name]
            while stack:
                for u in TABLES[stack.pop()]["upstream"]:
                    out.add(u)
                    stack.append(u)
        if down:
            stack = [name]
            while stack:
                for d in TABLES[stack.pop()]["downstream"]:
                    out.add(d)
                    stack.append(d)
    return [t for t in ORDER if t in out]


def schedule(tables, start, scale=1.0, rnd=None):
    """Start and end offsets (seconds) of each table's task, respecting dependencies."""
    rnd = rnd or random.Random(1)
    done = {}
    for t in tables:
        begin = max([done[u][1] for u in TABLES[t]["upstream"] if u in done] or [0.2 * scale])
        begin += 0.05 * scale
        dur = BASE_DURATION[t] * scale * rnd.uniform(0.8, 1.3)
        done[t] = (begin, begin + dur)
    return done


def make_task(run_id, t, status, started, ended, rnd, attempts=1, error=None, message=None):
    meta = TABLES[t]
    read = written = quarantined = dropped = 0
    if status == "success":
        if t == "bronze.orders":
            read = rnd.randint(28, 46); quarantined = rnd.randint(0, 2); written = read - quarantined
        elif t == "bronze.customers":
            read = 61; written = 61
        elif t == "silver.orders":
            read = rnd.randint(28, 46); quarantined = rnd.randint(0, 3); dropped = rnd.randint(0, 1)
            written = read - quarantined - dropped
        elif t == "silver.customers":
            read = 122; written = 61
        elif t == "gold.daily_revenue":
            read = rnd.randint(30, 45); written = 4
        else:
            read = 61 + 400; written = 61
    table_rows = None
    version = None
    if status == "success" and written > 0:
        if meta["materialized"] in ("table",):
            TABLE_ROWS[t] = written
        else:
            TABLE_ROWS[t] += written
        table_rows = TABLE_ROWS[t]
        version = len(VERSIONS[t])
        op = {"ingest": "WRITE", "incremental": "MERGE", "table": "CREATE OR REPLACE TABLE",
              "replace_range": "WRITE (replaceWhere)"}[meta["materialized"]]
        if version == 0:
            op = "CREATE TABLE"
        VERSIONS[t].append({"version": version, "timestamp": ts(ended), "operation": op, "run_id": run_id})
    elif status in ("success", "skipped"):
        table_rows = TABLE_ROWS[t] or None
    return {
        "run_id": run_id, "task": t, "kind": meta["materialized"], "model": t,
        "status": status, "started_at": ts(started), "ended_at": ts(ended),
        "attempts": attempts, "rows_read": read, "rows_written": written,
        "rows_quarantined": quarantined, "rows_dropped": dropped, "table_rows": table_rows,
        "delta_version": version,
        "cpu_ms": int(((ended - started).total_seconds() if started and ended else 0) * 900),
        "bytes_read": read * 212, "bytes_written": written * 180,
        "message": message, "error": error,
        "data_time": ts(started.replace(hour=0, minute=0, second=0, microsecond=0)) if started and t.startswith("bronze") else None,
    }


def add_checks(run_id, task, rnd, fail=None):
    t = task["task"]
    for c in TABLES[t]["checks"]:
        failing = 0
        status = "pass"
        action = None
        sample = "[]"
        if fail and c["name"] == fail:
            failing = 2 if t == "silver.orders" else 1
            status = "fail"
            sample = json.dumps([{"customer_id": 61}] if t == "gold.customer_ltv" else [{"order_id": 1071, "customer_id": None}])
        elif c["kind"] == "row":
            failing = task["rows_quarantined"]
            status = "warn" if failing else "pass"
            action = "quarantine"
            if failing:
                sample = json.dumps([{"order_id": 1044, "quantity": 0}])
        elif c["kind"] == "accepted_values" and task["status"] == "success":
            failing = 1
            status = "warn"
            sample = json.dumps([{"customer_id": 61, "segment": "VIP"}])
        if task["status"] not in ("success", "failed"):
            continue
        CHECK_RESULTS.append({
            "run_id": run_id, "model": t, "check_name": c["name"], "kind": c["kind"],
            "severity": c["severity"], "status": status, "failing_rows": failing, "action": action,
            "sample": sample, "checked_at": task["ended_at"], "interval": None,
        })


def add_run(start, trigger, selection="", outcome=None, resumed_from=None, tables=None, scale=1.0):
    """A finished run. outcome: {table: ("failed", check) | ("skipped", msg) | ("interrupted", None)}."""
    rnd = random.Random(start.timestamp())
    outcome = outcome or {}
    tables = tables or select_tables(selection)
    rid = run_id_at(start)
    sched = schedule(tables, start, scale, rnd)
    tasks = []
    failed = set()
    for t in tables:
        b, e = sched[t]
        s_at, e_at = start + timedelta(seconds=b), start + timedelta(seconds=e)
        if any(u in failed for u in TABLES[t]["upstream"]):
            tasks.append(make_task(rid, t, "upstream_failed", None, None, rnd,
                                   attempts=0, message="an upstream task failed"))
            failed.add(t)
            continue
        kind, arg = outcome.get(t, ("success", None))
        if kind == "failed":
            task = make_task(rid, t, "failed", s_at, e_at, rnd, attempts=2, error=ERRORS[t])
            add_checks(rid, task, rnd, fail=arg)
            failed.add(t)
        elif kind == "skipped":
            task = make_task(rid, t, "skipped", s_at, s_at + timedelta(milliseconds=120), rnd, message=arg)
        elif kind == "interrupted":
            task = make_task(rid, t, "interrupted", s_at, None, rnd, message="the process running this task died")
            failed.add(t)
        else:
            task = make_task(rid, t, "success", s_at, e_at, rnd)
            add_checks(rid, task, rnd)
        tasks.append(task)
    ends = [parse_ts(x["ended_at"]) for x in tasks if x["ended_at"]]
    status = "success"
    if any(x["status"] == "failed" for x in tasks):
        status = "failed"
    if any(x["status"] == "interrupted" for x in tasks):
        status = "interrupted"
    run = {
        "run_id": rid, "started_at": ts(start), "ended_at": ts(max(ends) if ends else start) if status != "interrupted" else None,
        "status": status, "selection": selection, "full_refresh": False, "trigger": trigger,
        "resumed_from": resumed_from,
        "interval": [ts(start.replace(hour=0, minute=0, second=0) - timedelta(days=1)),
                     ts(start.replace(hour=0, minute=0, second=0))] if trigger == "schedule" else None,
        "tasks": tasks,
    }
    RUNS.append(run)
    return run


def build_history():
    today2 = NOW0.replace(hour=2, minute=0, second=0)
    if today2 > NOW0 - timedelta(minutes=10):
        today2 -= timedelta(days=1)
    for d in range(7, 0, -1):
        start = today2 - timedelta(days=d)
        if d == 3:
            r = add_run(start, "schedule", "", {"silver.orders": ("failed", "not_null(order_id, customer_id)")})
            r["status"] = "resumed"
            add_run(start + timedelta(hours=3, minutes=12), "api", "", resumed_from=r["run_id"],
                    tables=[t for t in ORDER if t.startswith(("silver.orders", "gold."))])
        elif d == 1:
            add_run(start, "schedule", "")
            add_run(start + timedelta(hours=13, minutes=40), "cli", "silver.customers+",
                    {"gold.customer_ltv": ("interrupted", None)})
        else:
            add_run(start, "schedule", "", scale=1.0 + (0.6 if d == 5 else 0))
    add_run(today2, "schedule", "", {
        "bronze.customers": ("skipped", "no new files in data/customers/*.csv"),
        "gold.customer_ltv": ("failed", "relationships(customer_id -> silver.customers)"),
    })


build_history()

INCIDENTS = [
    {"id": "inc-" + uuid.uuid4().hex[:8], "rule": "data-team", "kind": "check_failed",
     "subject": "gold.customer_ltv: relationships(customer_id -> silver.customers)", "status": "firing",
     "summary": "check relationships(customer_id -> silver.customers) on gold.customer_ltv failed: 1 row",
     "opened_at": RUNS[-1]["ended_at"], "last_sent_at": RUNS[-1]["ended_at"], "sends": 1,
     "resolved_at": None, "last_error": None},
    {"id": "inc-" + uuid.uuid4().hex[:8], "rule": "data-team", "kind": "sla_missed",
     "subject": "bronze.customers", "status": "firing",
     "summary": "bronze.customers is stale: last loaded more than 26h ago (SLA 26h, from source)",
     "opened_at": ts(NOW0 - timedelta(hours=3)), "last_sent_at": ts(NOW0 - timedelta(hours=3)), "sends": 1,
     "resolved_at": None, "last_error": "webhook answered 502 Bad Gateway; will retry"},
    {"id": "inc-" + uuid.uuid4().hex[:8], "rule": "data-team", "kind": "run_failed",
     "subject": "run of everything", "status": "resolved",
     "summary": "run failed: 1 task failed (silver.orders)",
     "opened_at": RUNS[3]["ended_at"], "last_sent_at": RUNS[3]["ended_at"], "sends": 2,
     "resolved_at": RUNS[4]["ended_at"], "last_error": None},
]
RULES = [{"name": "data-team", "on": ["run_failed", "task_failed", "check_failed", "sla_missed", "anomaly", "schema_changed"], "silenced_until": None},
         {"name": "finance-pager", "on": ["sla_missed"], "silenced_until": ts(NOW0 + timedelta(hours=6))}]


# Live runs started through the API: tasks advance with the wall clock.
LIVE = {}  # run_id -> {"start": datetime, "sched": {...}, "tables": [...]}
LIVE_SCALE = 0.12  # a whole run takes about 2 s


def advance(run):
    live = LIVE.get(run["run_id"])
    if not live:
        return
    t_now = now()
    el = (t_now - live["start"]).total_seconds()
    rnd = random.Random(run["run_id"])
    tasks = []
    for t in live["tables"]:
        b, e = live["sched"][t]
        if el < b:
            tasks.append({"run_id": run["run_id"], "task": t, "kind": TABLES[t]["materialized"], "model": t,
                          "status": "pending", "started_at": None, "ended_at": None, "attempts": 0,
                          "rows_read": 0, "rows_written": 0, "rows_quarantined": 0, "rows_dropped": 0,
                          "table_rows": None, "delta_version": None, "cpu_ms": 0, "bytes_read": 0,
                          "bytes_written": 0, "message": None, "error": None, "data_time": None})
        elif el < e:
            tasks.append({"run_id": run["run_id"], "task": t, "kind": TABLES[t]["materialized"], "model": t,
                          "status": "running", "started_at": ts(live["start"] + timedelta(seconds=b)),
                          "ended_at": None, "attempts": 1, "rows_read": 0, "rows_written": 0,
                          "rows_quarantined": 0, "rows_dropped": 0, "table_rows": None, "delta_version": None,
                          "cpu_ms": 0, "bytes_read": 0, "bytes_written": 0, "message": None, "error": None,
                          "data_time": None})
        else:
            tasks.append(None)  # finished: built once below
    # finish tasks once, in order, so versions and row counts accumulate
    done = live.setdefault("done", {})
    for i, t in enumerate(live["tables"]):
        if tasks[i] is None:
            if t not in done:
                b, e = live["sched"][t]
                task = make_task(run["run_id"], t, "success", live["start"] + timedelta(seconds=b),
                                 live["start"] + timedelta(seconds=e), rnd)
                add_checks(run["run_id"], task, rnd)
                done[t] = task
            tasks[i] = done[t]
    run["tasks"] = tasks
    if all(x["status"] == "success" for x in tasks):
        run["status"] = "success"
        run["ended_at"] = max(x["ended_at"] for x in tasks)
        if live.get("resumes"):
            for r in RUNS:
                if r["run_id"] == live["resumes"]:
                    r["status"] = "resumed"
        del LIVE[run["run_id"]]


def start_run(selection="", trigger="api", resumed_from=None, tables=None, interval=None, full_refresh=False):
    start = now()
    tables = tables if tables is not None else select_tables(selection)
    rid = run_id_at(start)
    run = {"run_id": rid, "started_at": ts(start), "ended_at": None, "status": "running",
           "selection": selection, "full_refresh": full_refresh, "trigger": trigger,
           "resumed_from": resumed_from, "interval": interval, "tasks": []}
    LIVE[rid] = {"start": start, "sched": schedule(tables, start, LIVE_SCALE, random.Random(rid)),
                 "tables": tables, "resumes": resumed_from}
    RUNS.append(run)
    advance(run)
    return rid


def all_runs():
    for r in RUNS:
        advance(r)
    return RUNS


def public_run(r, with_tasks=False):
    out = {k: v for k, v in r.items() if k != "tasks"}
    if with_tasks:
        out["tasks"] = r["tasks"]
    return out


def latest_tasks():
    out = {}
    for r in all_runs():
        for t in r["tasks"]:
            if t["status"] in ("pending",):
                continue
            out[t["task"]] = t
    return out


def latest_checks():
    out = {}
    for c in CHECK_RESULTS:
        out[(c["model"], c["check_name"])] = c
    return out


def freshness(table):
    meta = TABLES[table]
    loads = [t for r in all_runs() for t in r["tasks"]
             if t["task"] == table and t["status"] == "success" and t["rows_written"] > 0]
    if not loads and not meta["sla"]:
        return None
    load = loads[-1] if loads else None
    lag = int((now() - parse_ts(load["ended_at"])).total_seconds()) if load else None
    sla = meta["sla"]
    return {"table": table, "loaded_at": load["ended_at"] if load else None,
            "data_time": load["data_time"] if load else None, "lag_seconds": lag,
            "sla_seconds": sla, "sla_from": meta["sla_from"],
            "stale": bool(sla and (lag is None or lag > sla))}


def failing_checks(table):
    return sum(1 for (m, _), c in latest_checks().items() if m == table and c["status"] == "fail")


def table_doc(name):
    m = TABLES[name]
    lc = latest_checks()
    checks = []
    for c in m["checks"]:
        r = lc.get((name, c["name"]))
        checks.append({"name": c["name"], "on_failure": c["on_failure"],
                       "last_status": r["status"] if r else None,
                       "last_failing": r["failing_rows"] if r else None,
                       "last_checked": r["checked_at"] if r else None})
    versions = VERSIONS[name]
    return {
        "name": name, "layer": m["layer"], "kind": m["kind"], "description": m["description"],
        "owner": m["owner"], "tags": m["tags"], "defined_in": m["defined_in"], "sql": m["sql"],
        "columns": m["columns"], "upstream": m["upstream"], "downstream": m["downstream"],
        "checks": checks, "version": versions[-1]["version"] if versions else None,
        "last_built": versions[-1]["timestamp"] if versions else None,
        "products": m["products"], "partitioning": m["partitioning"],
    }


def model_detail(name):
    d = table_doc(name)
    d["history"] = [t for r in all_runs() for t in r["tasks"] if t["task"] == name and t["status"] != "pending"]
    d["check_history"] = [c for c in reversed(CHECK_RESULTS) if c["model"] == name][:50]
    d["versions"] = list(reversed(VERSIONS[name]))
    d["freshness"] = freshness(name)
    return d


def conditions():
    out = []
    lt = latest_tasks()
    seen = set()
    for r in reversed(all_runs()):
        if r["status"] == "running" or r["selection"] in seen:
            continue
        seen.add(r["selection"])
        if r["status"] in ("failed", "interrupted"):
            failed = [t["task"] for t in r["tasks"] if t["status"] == "failed"]
            shown = r["selection"] or "everything"
            out.append({"kind": "run_failed", "subject": f"run of {shown}", "severity": "error",
                        "summary": (f"run {r['run_id']} failed: {len(failed)} task{'s' if len(failed) != 1 else ''} failed ({', '.join(failed)})"
                                    if failed else f"run {r['run_id']} {r['status']}"),
                        "tables": failed, "fields": {"run_id": r["run_id"], "status": r["status"]}})
    for name, t in lt.items():
        if t["status"] == "failed":
            out.append({"kind": "task_failed", "subject": name, "severity": "error",
                        "summary": f"{name} failed after {t['attempts']} attempts: {(t['error'] or '').splitlines()[0]}",
                        "tables": [name], "fields": {"run_id": t["run_id"], "task": name}})
    for (m, cname), c in latest_checks().items():
        if c["status"] == "pass" or (c["kind"] == "row" and c["status"] != "fail"):
            continue
        out.append({"kind": "check_failed", "subject": f"{m}: {cname}",
                    "severity": "error" if c["status"] == "fail" else "warn",
                    "summary": f"check {cname} on {m}: {c['failing_rows']} failing row{'s' if c['failing_rows'] != 1 else ''}",
                    "tables": [m], "fields": {"model": m, "check": cname, "failing_rows": c["failing_rows"]}})
    for name in ORDER:
        f = freshness(name)
        if f and f["stale"]:
            out.append({"kind": "sla_missed", "subject": name, "severity": "error",
                        "summary": f"{name} last loaded {f['lag_seconds'] // 3600}h ago; SLA {f['sla_seconds'] // 3600}h ({f['sla_from']})",
                        "tables": [name], "fields": {"lag_seconds": f["lag_seconds"], "sla_seconds": f["sla_seconds"]}})
    out.append({"kind": "anomaly", "subject": "gold.daily_revenue", "severity": "warn",
                "summary": "rows written 4 is 2.8σ below the mean of the last 14 runs (11.3)",
                "tables": ["gold.daily_revenue"], "fields": {"metric": "rows_written"}})
    return out


def overview():
    conds = conditions()
    fr = [f for f in (freshness(t) for t in ORDER) if f]
    lt = latest_tasks()
    open_alerts = [i for i in INCIDENTS if i["status"] == "firing"]
    return {
        "project": "example", "generated_at": ts(now()),
        "conditions": conds, "freshness": fr,
        "recent_runs": [public_run(r) for r in reversed(all_runs())][:10],
        "open_alerts": open_alerts,
        "counts": {
            "tables": len(TABLES),
            "failing_checks": sum(1 for c in latest_checks().values() if c["status"] != "pass" and c["kind"] != "row"),
            "stale_tables": sum(1 for f in fr if f["stale"]),
            "failed_tasks": sum(1 for t in lt.values() if t["status"] == "failed"),
            "open_alerts": len(open_alerts),
        },
    }


def lineage():
    lt = latest_tasks()
    nodes = []
    for name in ORDER:
        m = TABLES[name]
        f = freshness(name)
        t = lt.get(name)
        nodes.append({"name": name, "layer": m["layer"], "kind": m["kind"],
                      "status": t["status"] if t else None,
                      "failing_checks": failing_checks(name), "stale": bool(f and f["stale"])})
    edges = [{"from": u, "to": n} for n in ORDER for u in TABLES[n]["upstream"]]
    return {"nodes": nodes, "edges": edges}


def metrics_text():
    lines = ["# HELP strata_task_duration_seconds Duration of the latest task of each table.",
             "# TYPE strata_task_duration_seconds gauge"]
    for name, t in latest_tasks().items():
        if t["started_at"] and t["ended_at"]:
            d = (parse_ts(t["ended_at"]) - parse_ts(t["started_at"])).total_seconds()
            lines.append(f'strata_task_duration_seconds{{table="{name}"}} {d:.3f}')
    lines.append("# TYPE strata_runs_total counter")
    lines.append(f"strata_runs_total {len(RUNS)}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# HTTP

class ApiError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def sql_value(v):
    return v


def rows_result(cur, table=None, by=None):
    types = col_types(table) if table else {}
    cols = []
    for i, d in enumerate(cur.description):
        name = d[0]
        ty = types.get(name)
        if ty is None:
            ty = "bigint" if name.lower().startswith("count") else "double"
        cols.append({"name": name, "type": ty})
    rows = [list(r) for r in cur.fetchall()]
    return {"columns": cols, "rows": rows}


class Handler(BaseHTTPRequestHandler):
    server_version = "strata-mock/0.1"

    def log_message(self, fmt, *args):
        if os.environ.get("MOCK_QUIET"):
            return
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))

    # -- helpers
    def send(self, status, body, ctype="application/json"):
        if not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode() if ctype == "application/json" else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def caller(self):
        h = self.headers.get("Authorization", "")
        if not h.startswith("Bearer "):
            raise ApiError(401, "missing bearer token: send Authorization: Bearer TOKEN")
        tok = TOKENS.get(h[len("Bearer "):].strip())
        if not tok:
            raise ApiError(401, "unknown token")
        return tok

    def admin(self):
        c = self.caller()
        if c["scope"] != "admin":
            raise ApiError(403, f"token `{c['name']}` has scope read; this needs scope admin")
        return c

    def body_json(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw.strip():
            return {}
        try:
            v = json.loads(raw)
        except ValueError as e:
            raise ApiError(400, f"invalid JSON body: {e}")
        if not isinstance(v, dict):
            raise ApiError(400, "the body must be a JSON object")
        return v

    def static(self, path):
        if path in ("/", "/index.html"):
            f = os.path.join(DASHBOARD_DIR, "index.html")
        elif path.startswith("/assets/"):
            name = path[len("/assets/"):]
            if "/" in name or name.startswith("."):
                raise ApiError(404, "no such asset")
            f = os.path.join(DASHBOARD_DIR, name)
        else:
            return False
        if not os.path.isfile(f):
            raise ApiError(404, f"no such file: {path}")
        ctype = mimetypes.guess_type(f)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        with open(f, "rb") as fh:
            self.send(200, fh.read(), ctype)
        return True

    def handle_any(self, method):
        try:
            u = urlparse(self.path)
            path = unquote(u.path)
            q = {k: v[-1] for k, v in parse_qs(u.query, keep_blank_values=True).items()}
            if method == "GET" and self.static(path):
                return
            with LOCK:
                self.route(method, path, q)
        except ApiError as e:
            self.send(e.status, {"error": e.message})
        except Exception as e:  # a bug in the mock
            import traceback
            traceback.print_exc()
            self.send(500, {"error": f"mock internal error: {e}"})

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def table_or_404(self, name):
        if name not in TABLES:
            raise ApiError(404, f"no table named `{name}`")
        return name

    def int_param(self, q, name, default, lo, hi):
        if name not in q or q[name] == "":
            return default
        try:
            v = int(q[name])
        except ValueError:
            raise ApiError(400, f"`{name}` must be an integer, got `{q[name]}`")
        if v < lo or v > hi:
            raise ApiError(400, f"`{name}` must be between {lo} and {hi}")
        return v

    def route(self, method, path, q):
        if path == "/healthz" and method == "GET":
            return self.send(200, {"status": "ok", "project": "example"})
        if path == "/api/openapi.json" and method == "GET":
            with open(OPENAPI, "rb") as fh:
                return self.send(200, fh.read())
        if not (path.startswith("/api/") or path == "/metrics"):
            raise ApiError(404, f"not found: {path}")
        me = self.caller()
        if path == "/metrics" and method == "GET":
            return self.send(200, metrics_text(), "text/plain; version=0.0.4")
        if path == "/api/me" and method == "GET":
            return self.send(200, me)
        if path == "/api/overview" and method == "GET":
            return self.send(200, overview())
        if path == "/api/models" and method == "GET":
            return self.send(200, [table_doc(n) for n in ORDER])
        m = re.fullmatch(r"/api/models/([^/]+)", path)
        if m and method == "GET":
            return self.send(200, model_detail(self.table_or_404(m.group(1))))
        if path == "/api/lineage" and method == "GET":
            return self.send(200, lineage())
        if path == "/api/products" and method == "GET":
            out = []
            for p in PRODUCTS:
                fr = [freshness(t) for t in p["models"]]
                fresh = None if not p["freshness"] else all(f and not f["stale"] for f in fr)
                out.append(dict(p, fresh=fresh))
            return self.send(200, out)
        if path == "/api/runs" and method == "GET":
            limit = self.int_param(q, "limit", 20, 1, 1000)
            return self.send(200, [public_run(r) for r in reversed(all_runs())][:limit])
        if path == "/api/runs" and method == "POST":
            self.admin()
            b = self.body_json()
            sel = b.get("select") or ""
            if not isinstance(sel, str):
                raise ApiError(400, "`select` must be a string")
            try:
                tables = select_tables(sel)
            except ValueError as e:
                raise ApiError(400, str(e))
            interval = [b["start"], b.get("end") or ts(now())] if b.get("start") else None
            rid = start_run(sel, "api", tables=tables, interval=interval, full_refresh=bool(b.get("full_refresh")))
            return self.send(202, {"run_id": rid})
        m = re.fullmatch(r"/api/runs/([^/]+)", path)
        if m and method == "GET":
            for r in all_runs():
                if r["run_id"] == m.group(1):
                    return self.send(200, public_run(r, True))
            raise ApiError(404, f"no run with id `{m.group(1)}`")
        m = re.fullmatch(r"/api/runs/([^/]+)/resume", path)
        if m and method == "POST":
            self.admin()
            for r in all_runs():
                if r["run_id"] == m.group(1):
                    if r["status"] not in ("failed", "interrupted"):
                        raise ApiError(400, f"run {r['run_id']} is {r['status']}; only a failed or interrupted run can be resumed")
                    todo = [t["task"] for t in r["tasks"] if t["status"] != "success"]
                    rid = start_run(r["selection"], "api", resumed_from=r["run_id"], tables=todo)
                    return self.send(202, {"run_id": rid})
            raise ApiError(404, f"no run with id `{m.group(1)}`")
        if path == "/api/backfills" and method == "POST":
            self.admin()
            b = self.body_json()
            if not b.get("start") or not b.get("end"):
                raise ApiError(400, "a backfill needs `start` and `end`")
            try:
                tables = [t for t in select_tables(b.get("select") or "") if TABLES[t]["partitioning"]]
            except ValueError as e:
                raise ApiError(400, str(e))
            if not tables:
                raise ApiError(400, "the selection has no partitioned model to backfill")
            rid = start_run(b.get("select") or "", "backfill", tables=tables, interval=[b["start"], b["end"]])
            return self.send(202, {"run_id": rid})
        if path == "/api/checks" and method == "GET":
            return self.send(200, list(latest_checks().values()))
        if path == "/api/alerts" and method == "GET":
            inc = sorted(INCIDENTS, key=lambda i: (i["status"] != "firing", i["opened_at"]))
            return self.send(200, {"incidents": inc, "rules": RULES})
        if path == "/api/query" and method == "POST":
            b = self.body_json()
            sql = b.get("sql")
            if not isinstance(sql, str) or not sql.strip():
                raise ApiError(400, "`sql` is required")
            if not re.match(r"^\s*(select|with)\b", sql, re.I):
                raise ApiError(400, "only read-only queries (SELECT / WITH) are allowed")
            fmt = b.get("format", "json")
            try:
                cur = DB.execute(rewrite_sql(sql))
                res = rows_result(cur)
            except sqlite3.Error as e:
                raise ApiError(400, f"query failed: {e}")
            if fmt == "json":
                return self.send(200, res)
            if fmt == "csv":
                import csv, io
                buf = io.StringIO()
                w = csv.writer(buf)
                w.writerow([c["name"] for c in res["columns"]])
                w.writerows(res["rows"])
                return self.send(200, buf.getvalue(), "text/csv")
            raise ApiError(400, f"format `{fmt}` is not supported by the mock")
        m = re.fullmatch(r"/api/tables/([^/]+)/rows", path)
        if m and method == "GET":
            name = self.table_or_404(m.group(1))
            limit = self.int_param(q, "limit", 100, 1, 10000)
            offset = self.int_param(q, "offset", 0, 0, 10 ** 12)
            where = q.get("where", "").strip()
            order_by = q.get("order_by", "").strip()
            if order_by and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\s+(asc|desc))?", order_by, re.I):
                raise ApiError(400, f"order_by must be a column, optionally followed by desc; got `{order_by}`")
            if order_by and order_by.split()[0] not in col_types(name):
                raise ApiError(400, f"no column `{order_by.split()[0]}` in {name}")
            w = f" where ({where})" if where else ""
            try:
                total = DB.execute(f'select count(*) from "{sqlname(name)}"{w}').fetchone()[0]
                cur = DB.execute(f'select * from "{sqlname(name)}"{w}' + (f" order by {order_by}" if order_by else "")
                                 + " limit ? offset ?", (limit, offset))
                res = rows_result(cur, name)
            except sqlite3.Error as e:
                raise ApiError(400, f"invalid filter `{where}`: {e}")
            res.update(limit=limit, offset=offset, total=total)
            return self.send(200, res)
        m = re.fullmatch(r"/api/tables/([^/]+)/slice", path)
        if m and method == "GET":
            name = self.table_or_404(m.group(1))
            by = [c.strip() for c in q.get("by", "").split(",") if c.strip()]
            if not by:
                raise ApiError(400, "`by` is required: one or more columns, comma-separated")
            for c in by:
                if c not in col_types(name):
                    raise ApiError(400, f"no column `{c}` in {name}; columns: {', '.join(col_types(name))}")
            metric = q.get("metric", "").strip() or "count(*)"
            where = q.get("where", "").strip()
            w = f" where ({where})" if where else ""
            bys = ", ".join(f'"{c}"' for c in by)
            try:
                cur = DB.execute(f'select {bys}, {metric} from "{sqlname(name)}"{w} group by {bys} order by {bys} limit 1000')
                res = rows_result(cur, name)
            except sqlite3.Error as e:
                raise ApiError(400, f"invalid slice: {e}")
            for c in res["columns"][len(by):]:
                c["name"] = c["name"].replace('"', "")
            return self.send(200, res)
        raise ApiError(404 if method == "GET" else 405, f"no route {method} {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    a = ap.parse_args()
    srv = ThreadingHTTPServer((a.host, a.port), Handler)
    print(f"mock Strata API on http://{a.host}:{srv.server_address[1]}/  (dashboard from {DASHBOARD_DIR})", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
