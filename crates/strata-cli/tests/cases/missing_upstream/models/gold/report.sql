select *
from silver.custmers
