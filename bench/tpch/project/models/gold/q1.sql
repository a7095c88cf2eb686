/*
description = "TPC-H Q1, pricing summary report (DELTA = 90 days), from the running sums of gold.q1_sums."
*/
select
    l_returnflag,
    l_linestatus,
    sum_qty,
    sum_base_price,
    sum_disc_price,
    sum_charge,
    cast(sum_qty / count_order as decimal(19,6)) as avg_qty,
    cast(sum_base_price / count_order as decimal(19,6)) as avg_price,
    cast(sum_disc / count_order as decimal(19,6)) as avg_disc,
    count_order
from gold.q1_sums
order by l_returnflag, l_linestatus
