/*
description = "TPC-H nation, typed and trimmed, one row per key: the latest ingested."
*/
-- Keys that occur more than once; usually none, so every other row passes
-- straight through and only the duplicated ones are ranked.
with dup as (
    select n_nationkey as k1
    from bronze.nation
    group by n_nationkey
    having count(*) > 1
),
latest as (
    select b.n_nationkey, b.n_name, b.n_regionkey, b.n_comment, b._ingested_at
    from dup d right join bronze.nation b on d.k1 = b.n_nationkey
    where d.k1 is null
    union all
    select n_nationkey, n_name, n_regionkey, n_comment, _ingested_at
    from (
        select b.n_nationkey, b.n_name, b.n_regionkey, b.n_comment, b._ingested_at,
            row_number() over (partition by b.n_nationkey order by b._ingested_at desc) as _rn
        from dup d join bronze.nation b on d.k1 = b.n_nationkey
    ) ranked
    where _rn = 1
)
select
    cast(n_nationkey as bigint) as n_nationkey,
    trim(n_name) as n_name,
    cast(n_regionkey as bigint) as n_regionkey,
    trim(n_comment) as n_comment
from latest
