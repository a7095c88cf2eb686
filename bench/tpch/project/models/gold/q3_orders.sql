/*
materialized = "incremental"
strategy = "accumulate"
unique_key = ["l_orderkey", "o_orderdate", "o_shippriority"]
lookups = ["silver.customer", "silver.orders"]
description = "TPC-H Q3's revenue per order (SEGMENT = BUILDING, DATE = 1995-03-15), added up as lineitems arrive; gold.q3 ranks it."
*/
select
    l_orderkey,
    o_orderdate,
    o_shippriority,
    sum(l_extendedprice * (1 - l_discount)) as revenue
from silver.customer, silver.orders, silver.lineitem
where c_mktsegment = 'BUILDING'
    and c_custkey = o_custkey
    and l_orderkey = o_orderkey
    and o_orderdate < date '1995-03-15'
    and l_shipdate > date '1995-03-15'
group by l_orderkey, o_orderdate, o_shippriority
