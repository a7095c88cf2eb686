/*
description = "TPC-H partsupp, typed and trimmed, one row per key: the latest ingested."
*/
-- Keys that occur more than once; usually none, so every other row passes
-- straight through and only the duplicated ones are ranked.
with dup as (
    select ps_partkey as k1, ps_suppkey as k2
    from bronze.partsupp
    group by ps_partkey, ps_suppkey
    having count(*) > 1
),
latest as (
    select b.ps_partkey, b.ps_suppkey, b.ps_availqty, b.ps_supplycost, b.ps_comment, b._ingested_at
    from dup d right join bronze.partsupp b on d.k1 = b.ps_partkey and d.k2 = b.ps_suppkey
    where d.k1 is null
    union all
    select ps_partkey, ps_suppkey, ps_availqty, ps_supplycost, ps_comment, _ingested_at
    from (
        select b.ps_partkey, b.ps_suppkey, b.ps_availqty, b.ps_supplycost, b.ps_comment, b._ingested_at,
            row_number() over (partition by b.ps_partkey, b.ps_suppkey order by b._ingested_at desc) as _rn
        from dup d join bronze.partsupp b on d.k1 = b.ps_partkey and d.k2 = b.ps_suppkey
    ) ranked
    where _rn = 1
)
select
    cast(ps_partkey as bigint) as ps_partkey,
    cast(ps_suppkey as bigint) as ps_suppkey,
    cast(ps_availqty as int) as ps_availqty,
    cast(ps_supplycost as decimal(15,2)) as ps_supplycost,
    trim(ps_comment) as ps_comment
from latest
