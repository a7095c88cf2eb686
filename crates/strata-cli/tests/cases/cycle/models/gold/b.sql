select * from silver.a
