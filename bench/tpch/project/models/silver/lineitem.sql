/*
materialized = "incremental"
strategy = "merge"
unique_key = ["l_orderkey", "l_linenumber"]
description = "TPC-H lineitem, typed and trimmed, one row per key: the latest ingested. New bronze rows are merged in."
*/
-- Keys that occur more than once; usually none, so every other row passes
-- straight through and only the duplicated ones are ranked.
with dup as (
    select l_orderkey as k1, l_linenumber as k2
    from bronze.lineitem
    group by l_orderkey, l_linenumber
    having count(*) > 1
),
latest as (
    select b.l_orderkey, b.l_partkey, b.l_suppkey, b.l_linenumber, b.l_quantity, b.l_extendedprice, b.l_discount, b.l_tax, b.l_returnflag, b.l_linestatus, b.l_shipdate, b.l_commitdate, b.l_receiptdate, b.l_shipinstruct, b.l_shipmode, b.l_comment, b._ingested_at
    from dup d right join bronze.lineitem b on d.k1 = b.l_orderkey and d.k2 = b.l_linenumber
    where d.k1 is null
    union all
    select l_orderkey, l_partkey, l_suppkey, l_linenumber, l_quantity, l_extendedprice, l_discount, l_tax, l_returnflag, l_linestatus, l_shipdate, l_commitdate, l_receiptdate, l_shipinstruct, l_shipmode, l_comment, _ingested_at
    from (
        select b.l_orderkey, b.l_partkey, b.l_suppkey, b.l_linenumber, b.l_quantity, b.l_extendedprice, b.l_discount, b.l_tax, b.l_returnflag, b.l_linestatus, b.l_shipdate, b.l_commitdate, b.l_receiptdate, b.l_shipinstruct, b.l_shipmode, b.l_comment, b._ingested_at,
            row_number() over (partition by b.l_orderkey, b.l_linenumber order by b._ingested_at desc) as _rn
        from dup d join bronze.lineitem b on d.k1 = b.l_orderkey and d.k2 = b.l_linenumber
    ) ranked
    where _rn = 1
)
select
    cast(l_orderkey as bigint) as l_orderkey,
    cast(l_partkey as bigint) as l_partkey,
    cast(l_suppkey as bigint) as l_suppkey,
    cast(l_linenumber as int) as l_linenumber,
    cast(l_quantity as decimal(15,2)) as l_quantity,
    cast(l_extendedprice as decimal(15,2)) as l_extendedprice,
    cast(l_discount as decimal(15,2)) as l_discount,
    cast(l_tax as decimal(15,2)) as l_tax,
    trim(l_returnflag) as l_returnflag,
    trim(l_linestatus) as l_linestatus,
    cast(l_shipdate as date) as l_shipdate,
    cast(l_commitdate as date) as l_commitdate,
    cast(l_receiptdate as date) as l_receiptdate,
    trim(l_shipinstruct) as l_shipinstruct,
    trim(l_shipmode) as l_shipmode,
    trim(l_comment) as l_comment
from latest
