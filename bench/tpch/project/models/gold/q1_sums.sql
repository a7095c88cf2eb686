/*
materialized = "incremental"
strategy = "accumulate"
unique_key = ["l_returnflag", "l_linestatus"]
description = "TPC-H Q1's sums and counts (DELTA = 90 days), added up as lineitems arrive; gold.q1 divides them into its averages."
*/
select
    l_returnflag,
    l_linestatus,
    sum(l_quantity) as sum_qty,
    sum(l_extendedprice) as sum_base_price,
    sum(l_extendedprice * (1 - l_discount)) as sum_disc_price,
    sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) as sum_charge,
    sum(l_discount) as sum_disc,
    count(*) as count_order
from silver.lineitem
where l_shipdate <= date '1998-09-02'
group by l_returnflag, l_linestatus
