/*
materialized = "incremental"
strategy = "merge"
unique_key = ["o_orderkey"]
lookups = ["silver.customer", "silver.nation", "silver.region"]
description = "Orders with their customer, nation and region. New and changed orders are merged in."
*/
select
    o_orderkey,
    o_custkey,
    o_orderstatus,
    o_totalprice,
    o_orderdate,
    o_orderpriority,
    o_clerk,
    o_shippriority,
    c_name,
    c_mktsegment,
    n_name,
    r_name
from silver.orders
join silver.customer on o_custkey = c_custkey
join silver.nation on c_nationkey = n_nationkey
join silver.region on n_regionkey = r_regionkey
