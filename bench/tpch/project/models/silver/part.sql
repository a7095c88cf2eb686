/*
description = "TPC-H part, typed and trimmed, one row per key: the latest ingested."
*/
-- Keys that occur more than once; usually none, so every other row passes
-- straight through and only the duplicated ones are ranked.
with dup as (
    select p_partkey as k1
    from bronze.part
    group by p_partkey
    having count(*) > 1
),
latest as (
    select b.p_partkey, b.p_name, b.p_mfgr, b.p_brand, b.p_type, b.p_size, b.p_container, b.p_retailprice, b.p_comment, b._ingested_at
    from dup d right join bronze.part b on d.k1 = b.p_partkey
    where d.k1 is null
    union all
    select p_partkey, p_name, p_mfgr, p_brand, p_type, p_size, p_container, p_retailprice, p_comment, _ingested_at
    from (
        select b.p_partkey, b.p_name, b.p_mfgr, b.p_brand, b.p_type, b.p_size, b.p_container, b.p_retailprice, b.p_comment, b._ingested_at,
            row_number() over (partition by b.p_partkey order by b._ingested_at desc) as _rn
        from dup d join bronze.part b on d.k1 = b.p_partkey
    ) ranked
    where _rn = 1
)
select
    cast(p_partkey as bigint) as p_partkey,
    trim(p_name) as p_name,
    trim(p_mfgr) as p_mfgr,
    trim(p_brand) as p_brand,
    trim(p_type) as p_type,
    cast(p_size as int) as p_size,
    trim(p_container) as p_container,
    cast(p_retailprice as decimal(15,2)) as p_retailprice,
    trim(p_comment) as p_comment
from latest
