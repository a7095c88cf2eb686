/*
materialized = "incremental"
strategy = "merge"
unique_key = ["o_orderkey"]
description = "TPC-H orders, typed and trimmed, one row per key: the latest ingested. New bronze rows are merged in."
*/
-- Keys that occur more than once; usually none, so every other row passes
-- straight through and only the duplicated ones are ranked.
with dup as (
    select o_orderkey as k1
    from bronze.orders
    group by o_orderkey
    having count(*) > 1
),
latest as (
    select b.o_orderkey, b.o_custkey, b.o_orderstatus, b.o_totalprice, b.o_orderdate, b.o_orderpriority, b.o_clerk, b.o_shippriority, b.o_comment, b._ingested_at
    from dup d right join bronze.orders b on d.k1 = b.o_orderkey
    where d.k1 is null
    union all
    select o_orderkey, o_custkey, o_orderstatus, o_totalprice, o_orderdate, o_orderpriority, o_clerk, o_shippriority, o_comment, _ingested_at
    from (
        select b.o_orderkey, b.o_custkey, b.o_orderstatus, b.o_totalprice, b.o_orderdate, b.o_orderpriority, b.o_clerk, b.o_shippriority, b.o_comment, b._ingested_at,
            row_number() over (partition by b.o_orderkey order by b._ingested_at desc) as _rn
        from dup d join bronze.orders b on d.k1 = b.o_orderkey
    ) ranked
    where _rn = 1
)
select
    cast(o_orderkey as bigint) as o_orderkey,
    cast(o_custkey as bigint) as o_custkey,
    trim(o_orderstatus) as o_orderstatus,
    cast(o_totalprice as decimal(15,2)) as o_totalprice,
    cast(o_orderdate as date) as o_orderdate,
    trim(o_orderpriority) as o_orderpriority,
    trim(o_clerk) as o_clerk,
    cast(o_shippriority as int) as o_shippriority,
    trim(o_comment) as o_comment
from latest
