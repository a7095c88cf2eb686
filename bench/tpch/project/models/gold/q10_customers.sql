/*
materialized = "incremental"
strategy = "accumulate"
unique_key = ["c_custkey", "c_name", "c_acctbal", "n_name", "c_address", "c_phone", "c_comment"]
lookups = ["silver.customer", "silver.orders", "silver.nation"]
description = "TPC-H Q10's lost revenue per customer (DATE = 1993-10-01), added up as lineitems arrive; gold.q10 ranks it."
*/
select
    c_custkey,
    c_name,
    sum(l_extendedprice * (1 - l_discount)) as revenue,
    c_acctbal,
    n_name,
    c_address,
    c_phone,
    c_comment
from silver.customer, silver.orders, silver.lineitem, silver.nation
where c_custkey = o_custkey
    and l_orderkey = o_orderkey
    and o_orderdate >= date '1993-10-01'
    and o_orderdate < date '1994-01-01'
    and l_returnflag = 'R'
    and c_nationkey = n_nationkey
group by c_custkey, c_name, c_acctbal, c_phone, n_name, c_address, c_comment
