//! The fixed project files of the `shop` example: `strata.toml`, `.gitignore`
//! and the SQL models of the silver and gold layers.

/// `strata.toml` of the example project.
pub(crate) const STRATA_TOML: &str = r#"[project]
name = "shop"

[sources.orders]
format = "ndjson"
path = "data/orders/*.ndjson"
mode = "new_files"
on_bad_rows = "quarantine"
time_column = "order_ts"
freshness = "26h"
description = "Orders exported by the shop, one NDJSON file per day."
columns = { order_id = "bigint", customer_id = "bigint", product_id = "bigint", quantity = "bigint", unit_price = "decimal(10,2)", status = "string", order_ts = "timestamp" }

[sources.customers]
format = "csv"
path = "data/customers/*.csv"
mode = "new_files"
on_bad_rows = "quarantine"
header = true
description = "Daily full snapshots of the customer table."
columns = { customer_id = "bigint", name = "string", email = "string", region = "string", signup_date = "date" }

[sources.products]
format = "parquet"
path = "data/products/*.parquet"
mode = "new_files"
description = "The product catalogue."

[products.revenue]
description = "Orders and revenue per day and region, for finance and sales dashboards."
owner = "analytics"
consumers = ["finance", "sales-ops"]
models = ["gold.daily_revenue"]
freshness = "26h"
access = ["sql", "dashboard"]

# Alerts: each incident is sent once, repeated every repeat_after while it
# lasts, and resolved once. This rule appends each alert (as JSON) to
# .strata/alerts.jsonl; point a webhook at Slack instead with
# webhook = "${SLACK_WEBHOOK_URL}", or mail it with email = ["..."] and [smtp].
[alerts.data-team]
on = ["run_failed", "task_failed", "check_failed", "sla_missed", "anomaly", "schema_changed"]
severity = "error"
command = "cat >> .strata/alerts.jsonl && echo >> .strata/alerts.jsonl"
repeat_after = "4h"
"#;

/// `.gitignore` of the example project: the lake and the state stay local.
pub(crate) const GITIGNORE: &str = "lake/\n.strata/\n";

/// `models/silver/orders.sql`.
pub(crate) const SILVER_ORDERS: &str = r#"/*
materialized = "incremental"
strategy = "merge"
unique_key = ["order_id"]
description = "One row per order: typed and deduplicated; the latest file wins, so a later status replaces an earlier one. Orders without a customer or with a quantity of zero or less are quarantined in silver.orders_quarantine."
owner = "data-team"
tags = ["orders"]

[[checks]]
expression = "customer_id is not null"
on_fail = "quarantine"

[[checks]]
expression = "quantity > 0"
on_fail = "quarantine"

[[checks]]
not_null = ["order_id", "order_ts", "amount"]

[[checks]]
accepted_values = { column = "status", values = ["placed", "shipped", "delivered", "cancelled"] }
*/
select
    order_id,
    customer_id,
    product_id,
    quantity,
    unit_price,
    quantity * unit_price as amount,
    status,
    order_ts,
    cast(order_ts as date) as order_date
from (
    select
        order_id,
        customer_id,
        product_id,
        quantity,
        unit_price,
        status,
        order_ts,
        row_number() over (
            partition by order_id
            order by _source desc, _ingested_at desc
        ) as _row
    from bronze.orders
    where order_id is not null
) as latest
where _row = 1
"#;

/// `models/silver/customers.sql`.
pub(crate) const SILVER_CUSTOMERS: &str = r#"/*
materialized = "scd2"
unique_key = ["customer_id"]
description = "The customer dimension with its full history (SCD type 2), built from the latest daily snapshot; names trimmed, e-mails lower-cased."
owner = "data-team"
tags = ["customers"]
*/
select
    customer_id,
    name,
    email,
    region,
    signup_date
from (
    select
        customer_id,
        trim(name) as name,
        lower(email) as email,
        region,
        signup_date,
        row_number() over (
            partition by customer_id
            order by _ingested_at desc
        ) as _row
    from bronze.customers
    where _source = (select max(_source) from bronze.customers)
      and customer_id is not null
) as snapshot
where _row = 1
"#;

/// `models/silver/products.sql`.
pub(crate) const SILVER_PRODUCTS: &str = r#"/*
materialized = "table"
description = "The product catalogue, one row per product."
owner = "data-team"
tags = ["products"]
*/
select
    product_id,
    name,
    category,
    price
from (
    select
        product_id,
        name,
        category,
        price,
        row_number() over (
            partition by product_id
            order by _ingested_at desc
        ) as _row
    from bronze.products
    where product_id is not null
) as latest
where _row = 1
"#;

/// `models/gold/fct_orders.sql`.
pub(crate) const GOLD_FCT_ORDERS: &str = r#"/*
materialized = "table"
description = "Order facts with the customer's current region and the product's category."
owner = "analytics"
tags = ["orders", "finance"]

[[checks]]
unique = ["order_id"]

[[checks]]
name = "orders have a current customer"
relationships = { column = "customer_id", to = "silver.customers", field = "customer_id" }
severity = "warn"
*/
select
    o.order_id,
    o.order_date,
    o.order_ts,
    o.customer_id,
    coalesce(c.region, 'unknown') as region,
    o.product_id,
    p.category,
    o.status,
    o.quantity,
    o.amount
from silver.orders as o
left join silver.customers as c
    on c.customer_id = o.customer_id
   and c.is_current
left join silver.products as p
    on p.product_id = o.product_id
"#;

/// `models/gold/daily_revenue.sql`.
pub(crate) const GOLD_DAILY_REVENUE: &str = r#"/*
materialized = "table"
description = "Orders and revenue per day and region; cancelled orders are excluded."
owner = "analytics"
tags = ["finance"]

[[checks]]
unique = ["order_date", "region"]

[[checks]]
row_count = { min = 1 }
*/
select
    order_date,
    region,
    count(*) as orders,
    sum(amount) as revenue
from gold.fct_orders
where status <> 'cancelled'
group by order_date, region
"#;

/// `models/gold/customer_lifetime_value.sql`.
pub(crate) const GOLD_CUSTOMER_LIFETIME_VALUE: &str = r#"/*
materialized = "table"
description = "Per current customer: first and last order date, number of orders and lifetime value; cancelled orders are excluded."
owner = "analytics"
tags = ["customers", "finance"]
*/
select
    f.customer_id,
    c.name,
    c.region,
    min(f.order_date) as first_order_date,
    max(f.order_date) as last_order_date,
    count(*) as orders,
    sum(f.amount) as lifetime_value
from gold.fct_orders as f
join silver.customers as c
    on c.customer_id = f.customer_id
   and c.is_current
where f.status <> 'cancelled'
group by f.customer_id, c.name, c.region
"#;

/// `checks/revenue_not_negative.sql`: a rule across gold.
pub(crate) const CHECK_REVENUE: &str = r#"/*
severity = "error"
description = "No day and region may show negative revenue."
*/
select order_date, region, revenue
from gold.daily_revenue
where revenue < 0
"#;

/// `tests/orders_latest_file_wins.toml`: a unit test of silver.orders.
pub(crate) const TEST_ORDERS: &str = r#"model = "silver.orders"
description = "The latest file wins: a later status replaces an earlier one; amount is quantity times unit price."

[[given]]
table = "bronze.orders"
rows = [
  { order_id = 1, customer_id = 7, product_id = 3, quantity = 2, unit_price = 10.5, status = "placed", order_ts = "2024-01-01T10:00:00Z", _source = "data/orders/orders_2024-01-01.ndjson" },
  { order_id = 1, customer_id = 7, product_id = 3, quantity = 2, unit_price = 10.5, status = "shipped", order_ts = "2024-01-01T10:00:00Z", _source = "data/orders/orders_2024-01-02.ndjson" },
  { order_id = 2, customer_id = 8, product_id = 4, quantity = 1, unit_price = 3.0, status = "placed", order_ts = "2024-01-02T09:00:00Z", _source = "data/orders/orders_2024-01-02.ndjson" },
]

[expect]
rows = [
  { order_id = 1, status = "shipped", amount = 21.0, order_date = "2024-01-01" },
  { order_id = 2, status = "placed", amount = 3.0, order_date = "2024-01-02" },
]
"#;

/// Every project file: path relative to the project folder, and content.
pub(crate) const PROJECT_FILES: &[(&str, &str)] = &[
    ("strata.toml", STRATA_TOML),
    (".gitignore", GITIGNORE),
    ("models/silver/orders.sql", SILVER_ORDERS),
    ("models/silver/customers.sql", SILVER_CUSTOMERS),
    ("models/silver/products.sql", SILVER_PRODUCTS),
    ("models/gold/fct_orders.sql", GOLD_FCT_ORDERS),
    ("checks/revenue_not_negative.sql", CHECK_REVENUE),
    ("tests/orders_latest_file_wins.toml", TEST_ORDERS),
    ("models/gold/daily_revenue.sql", GOLD_DAILY_REVENUE),
    (
        "models/gold/customer_lifetime_value.sql",
        GOLD_CUSTOMER_LIFETIME_VALUE,
    ),
];
