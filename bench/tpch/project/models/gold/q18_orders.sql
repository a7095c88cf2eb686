/*
materialized = "incremental"
strategy = "accumulate"
unique_key = ["l_orderkey"]
description = "Quantity per order, added up as lineitems arrive; gold.q18 picks the orders above 300."
*/
select
    l_orderkey,
    sum(l_quantity) as sum_quantity
from silver.lineitem
group by l_orderkey
