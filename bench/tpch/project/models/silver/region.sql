/*
description = "TPC-H region, typed and trimmed, one row per key: the latest ingested."
*/
-- Keys that occur more than once; usually none, so every other row passes
-- straight through and only the duplicated ones are ranked.
with dup as (
    select r_regionkey as k1
    from bronze.region
    group by r_regionkey
    having count(*) > 1
),
latest as (
    select b.r_regionkey, b.r_name, b.r_comment, b._ingested_at
    from dup d right join bronze.region b on d.k1 = b.r_regionkey
    where d.k1 is null
    union all
    select r_regionkey, r_name, r_comment, _ingested_at
    from (
        select b.r_regionkey, b.r_name, b.r_comment, b._ingested_at,
            row_number() over (partition by b.r_regionkey order by b._ingested_at desc) as _rn
        from dup d join bronze.region b on d.k1 = b.r_regionkey
    ) ranked
    where _rn = 1
)
select
    cast(r_regionkey as bigint) as r_regionkey,
    trim(r_name) as r_name,
    trim(r_comment) as r_comment
from latest
