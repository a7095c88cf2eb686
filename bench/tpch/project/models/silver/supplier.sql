/*
description = "TPC-H supplier, typed and trimmed, one row per key: the latest ingested."
*/
-- Keys that occur more than once; usually none, so every other row passes
-- straight through and only the duplicated ones are ranked.
with dup as (
    select s_suppkey as k1
    from bronze.supplier
    group by s_suppkey
    having count(*) > 1
),
latest as (
    select b.s_suppkey, b.s_name, b.s_address, b.s_nationkey, b.s_phone, b.s_acctbal, b.s_comment, b._ingested_at
    from dup d right join bronze.supplier b on d.k1 = b.s_suppkey
    where d.k1 is null
    union all
    select s_suppkey, s_name, s_address, s_nationkey, s_phone, s_acctbal, s_comment, _ingested_at
    from (
        select b.s_suppkey, b.s_name, b.s_address, b.s_nationkey, b.s_phone, b.s_acctbal, b.s_comment, b._ingested_at,
            row_number() over (partition by b.s_suppkey order by b._ingested_at desc) as _rn
        from dup d join bronze.supplier b on d.k1 = b.s_suppkey
    ) ranked
    where _rn = 1
)
select
    cast(s_suppkey as bigint) as s_suppkey,
    trim(s_name) as s_name,
    trim(s_address) as s_address,
    cast(s_nationkey as bigint) as s_nationkey,
    trim(s_phone) as s_phone,
    cast(s_acctbal as decimal(15,2)) as s_acctbal,
    trim(s_comment) as s_comment
from latest
