/* materialized = "table" */
select id,
       amount * 2 as doubled,
       amont as typo
from bronze.orders
