/*
[columns.region]
type = "string"
nullable = false

[columns.total]
type = "bigint"
*/
select region, sum(amount) as total, count(*) as n
from bronze.sales
group by region
