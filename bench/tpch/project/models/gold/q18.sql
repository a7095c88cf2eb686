/*
description = "TPC-H Q18, large volume customer (QUANTITY = 300), from the per-order quantities of gold.q18_orders (first in FROM: the few orders above 300 are what the joins build on)."
*/
select
    c_name,
    c_custkey,
    o_orderkey,
    o_orderdate,
    o_totalprice,
    sum_quantity
from gold.q18_orders, silver.orders, silver.customer
where sum_quantity > 300
    and o_orderkey = l_orderkey
    and c_custkey = o_custkey
order by o_totalprice desc, o_orderdate
limit 100
