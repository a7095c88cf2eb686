/* materialized = "incremental"
strategy = "merge" */
select 1 as id
