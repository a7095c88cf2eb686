/*
description = "TPC-H customer, typed and trimmed, one row per key: the latest ingested."
*/
-- Keys that occur more than once; usually none, so every other row passes
-- straight through and only the duplicated ones are ranked.
with dup as (
    select c_custkey as k1
    from bronze.customer
    group by c_custkey
    having count(*) > 1
),
latest as (
    select b.c_custkey, b.c_name, b.c_address, b.c_nationkey, b.c_phone, b.c_acctbal, b.c_mktsegment, b.c_comment, b._ingested_at
    from dup d right join bronze.customer b on d.k1 = b.c_custkey
    where d.k1 is null
    union all
    select c_custkey, c_name, c_address, c_nationkey, c_phone, c_acctbal, c_mktsegment, c_comment, _ingested_at
    from (
        select b.c_custkey, b.c_name, b.c_address, b.c_nationkey, b.c_phone, b.c_acctbal, b.c_mktsegment, b.c_comment, b._ingested_at,
            row_number() over (partition by b.c_custkey order by b._ingested_at desc) as _rn
        from dup d join bronze.customer b on d.k1 = b.c_custkey
    ) ranked
    where _rn = 1
)
select
    cast(c_custkey as bigint) as c_custkey,
    trim(c_name) as c_name,
    trim(c_address) as c_address,
    cast(c_nationkey as bigint) as c_nationkey,
    trim(c_phone) as c_phone,
    cast(c_acctbal as decimal(15,2)) as c_acctbal,
    trim(c_mktsegment) as c_mktsegment,
    trim(c_comment) as c_comment
from latest
