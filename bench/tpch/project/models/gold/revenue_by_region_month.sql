/*
materialized = "incremental"
strategy = "accumulate"
unique_key = ["region", "month"]
lookups = ["silver.orders_enriched"]
description = "Revenue (extendedprice * (1 - discount)) by customer region and order month."
*/
select
    r_name as region,
    cast(date_trunc('month', o_orderdate) as date) as month,
    sum(l_extendedprice * (1 - l_discount)) as revenue
from silver.lineitem
join silver.orders_enriched on l_orderkey = o_orderkey
group by r_name, cast(date_trunc('month', o_orderdate) as date)
