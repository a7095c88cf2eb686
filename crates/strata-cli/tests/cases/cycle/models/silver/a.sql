select * from gold.b
