/*
description = "TPC-H Q10, returned item reporting (DATE = 1993-10-01): the top 20 of gold.q10_customers."
*/
select
    c_custkey,
    c_name,
    revenue,
    c_acctbal,
    n_name,
    c_address,
    c_phone,
    c_comment
from gold.q10_customers
order by revenue desc
limit 20
