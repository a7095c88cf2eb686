/*
description = "TPC-H Q3, shipping priority (SEGMENT = BUILDING, DATE = 1995-03-15): the top 10 of gold.q3_orders."
*/
select
    l_orderkey,
    revenue,
    o_orderdate,
    o_shippriority
from gold.q3_orders
order by revenue desc, o_orderdate
limit 10
