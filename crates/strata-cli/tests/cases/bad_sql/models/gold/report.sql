/* materialized = "table" */
select a,
  from silver.x where
