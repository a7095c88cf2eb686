//! Tests of the example generator.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;

type Files = BTreeMap<PathBuf, Vec<u8>>;

fn collect(root: &Path, dir: &Path, out: &mut Files) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).expect("under root").to_path_buf();
            out.insert(rel, std::fs::read(&path).expect("read file"));
        }
    }
}

fn files(root: &Path) -> Files {
    let mut out = Files::new();
    collect(root, root, &mut out);
    out
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

fn orders_file(dir: &Path, day: u32) -> PathBuf {
    dir.join(format!("data/orders/orders_2024-01-{day:02}.ndjson"))
}

fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read text")
}

/// Customer snapshot rows by id: (name, email, region, signup_date); short rows
/// and the number of fields are reported separately.
fn snapshot(path: &Path) -> (BTreeMap<i64, Vec<String>>, Vec<csv::StringRecord>) {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .expect("open csv");
    assert_eq!(
        reader.headers().expect("header").iter().collect::<Vec<_>>(),
        ["customer_id", "name", "email", "region", "signup_date"]
    );
    let mut rows = BTreeMap::new();
    let mut short = Vec::new();
    for rec in reader.records() {
        let rec = rec.expect("record");
        let id: i64 = rec[0].parse().expect("customer id");
        if rec.len() < 5 {
            short.push(rec.clone());
        }
        let prev = rows.insert(id, rec.iter().skip(1).map(str::to_string).collect());
        assert!(prev.is_none(), "customer {id} twice in {}", path.display());
    }
    (rows, short)
}

#[test]
fn init_is_deterministic_and_complete() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let (da, db) = (a.path().join("shop"), b.path().join("shop"));
    let sa = init_shop(&da, 1).expect("init a");
    let sb = init_shop(&db, 1).expect("init b");
    assert_eq!(sa, sb);
    let (fa, fb) = (files(&da), files(&db));
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (path, bytes) in &fa {
        assert!(
            fb.get(path) == Some(bytes),
            "{} differs between two runs",
            path.display()
        );
    }

    for rel in [
        "strata.toml",
        ".gitignore",
        "models/silver/orders.sql",
        "models/silver/customers.sql",
        "models/silver/products.sql",
        "models/gold/fct_orders.sql",
        "models/gold/daily_revenue.sql",
        "models/gold/customer_lifetime_value.sql",
        "data/products/products.parquet",
        "data/customers/customers_2024-01-30.csv",
        "data/.example.json",
    ] {
        assert!(fa.contains_key(Path::new(rel)), "{rel} missing");
    }
    assert_eq!(
        fa[Path::new("strata.toml")],
        project::STRATA_TOML.as_bytes()
    );
    assert_eq!(fa[Path::new(".gitignore")], b"lake/\n.strata/\n");
    for day in 1..=30 {
        let exists = orders_file(&da, day).exists();
        assert_eq!(exists, day != 12 && day != 20, "orders file of day {day}");
    }
    assert!(!fa.keys().any(|p| p.to_string_lossy().ends_with(".tmp")));
    assert_eq!(sa.days.len(), 28);
    assert_eq!(sa.products, 200);
    assert_eq!(sa.customers, 2_000);
    assert_eq!(sa.files_written, fa.len());
    assert!(
        (90_000..110_000).contains(&sa.orders),
        "orders: {}",
        sa.orders
    );

    let state: serde_json::Value =
        serde_json::from_slice(&fa[Path::new("data/.example.json")]).expect("state json");
    assert_eq!(state["days_generated"], 30);
    assert_eq!(state["start"], "2024-01-01");
    assert_eq!(state["scale"], 1);

    assert!(matches!(
        init_shop(&da, 1),
        Err(ExampleError::AlreadyExists { .. })
    ));
}

#[test]
fn orders_carry_the_documented_flaws() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    init_shop(dir, 1).expect("init");

    let mut first_seen: HashMap<i64, (u32, serde_json::Value)> = HashMap::new();
    let mut last_max_id = 0;
    let (
        mut updates,
        mut duplicates,
        mut truncated,
        mut bad_qty,
        mut bad_date,
        mut null_cust,
        mut non_pos,
    ) = (0, 0, 0, 0, 0, 0, 0);
    for day in (1..=30).filter(|d| *d != 12 && *d != 20) {
        let text = read_text(&orders_file(dir, day));
        let mut seen_lines = BTreeSet::new();
        let mut day_ids = Vec::new();
        for line in text.lines() {
            if !seen_lines.insert(line) {
                duplicates += 1;
                continue;
            }
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                truncated += 1;
                assert!(line.starts_with("{\"order_id\":"), "{line}");
                continue;
            };
            let id = v["order_id"].as_i64().expect("order id");
            let ts = v["order_ts"].as_str().expect("order_ts");
            if v["quantity"].is_string() {
                bad_qty += 1;
            } else if v["quantity"].as_i64().expect("quantity") <= 0 {
                non_pos += 1;
            }
            if ts.contains("-32T") {
                bad_date += 1;
            } else {
                assert!(ts.len() == 19 && ts.as_bytes()[10] == b'T', "{ts}");
            }
            if v["customer_id"].is_null() {
                null_cust += 1;
            }
            assert!(
                ["placed", "shipped", "delivered", "cancelled"]
                    .contains(&v["status"].as_str().expect("status"))
            );
            match first_seen.get(&id) {
                Some((earlier_day, earlier)) => {
                    // A legitimate update: same order, same timestamp, another status.
                    assert!(*earlier_day < day);
                    assert_eq!(earlier["order_ts"], v["order_ts"]);
                    assert_eq!(earlier["customer_id"], v["customer_id"]);
                    assert_ne!(earlier["status"], v["status"]);
                    updates += 1;
                }
                None => {
                    assert!(
                        ts.starts_with(&format!("2024-01-{day:02}")) || ts.contains("-32T"),
                        "{ts} on day {day}"
                    );
                    first_seen.insert(id, (day, v.clone()));
                    day_ids.push(id);
                }
            }
        }
        // Ids grow across days.
        let min = day_ids.iter().min().copied().unwrap_or_default();
        assert!(min > last_max_id, "day {day}: ids must grow");
        last_max_id = day_ids.iter().max().copied().unwrap_or_default();
    }
    eprintln!(
        "duplicates {duplicates} updates {updates} truncated {truncated} bad quantity {bad_qty} \
         bad date {bad_date} null customer {null_cust} non-positive quantity {non_pos}"
    );
    assert!((800..1_200).contains(&duplicates));
    assert!((300..600).contains(&updates));
    assert_eq!(truncated, 28);
    assert_eq!(bad_qty, 56);
    assert_eq!(bad_date, 56);
    assert!((200..420).contains(&null_cust));
    assert!((100..320).contains(&non_pos));

    let (rows, short) = snapshot(&dir.join("data/customers/customers_2024-01-30.csv"));
    assert_eq!(rows.len(), 2_000);
    assert_eq!(short.len(), 1);
    assert_eq!(short[0].len(), 2);
    let full: Vec<_> = rows.values().filter(|r| r.len() == 4).collect();
    assert_eq!(full.iter().filter(|r| r[3] == "2024-02-31").count(), 1);
    let empty_email = full.iter().filter(|r| r[1].is_empty()).count();
    let padded = full.iter().filter(|r| r[0] != r[0].trim()).count();
    let mixed = full.iter().filter(|r| r[1] != r[1].to_lowercase()).count();
    eprintln!(
        "customers: empty email {empty_email}, padded name {padded}, mixed-case email {mixed}"
    );
    assert!((3..25).contains(&empty_email));
    assert!((30..100).contains(&padded));
    assert!((40..130).contains(&mixed));
    for r in &full {
        assert!(data::REGIONS.contains(&r[2].as_str()));
    }
}

#[test]
fn next_day_writes_late_file_and_changed_snapshot() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    init_shop(dir, 1).expect("init");
    let before = files(dir);

    let s1 = next_day(dir).expect("next day");
    assert_eq!(s1.days, vec![date(2024, 1, 20), date(2024, 1, 31)]);
    assert_eq!(s1.files_written, 4);
    assert!(orders_file(dir, 20).exists());
    assert!(orders_file(dir, 31).exists());
    assert!(!orders_file(dir, 12).exists());
    let after = files(dir);
    for (path, bytes) in &before {
        if !path.ends_with(".example.json") {
            assert!(
                after.get(path) == Some(bytes),
                "{} was changed by next_day",
                path.display()
            );
        }
    }

    // The late file looks like any other day: its own orders, from that day.
    let late = read_text(&orders_file(dir, 20));
    assert!(late.lines().count() > 3_000);
    assert!(
        late.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .all(|v| v["order_ts"]
                .as_str()
                .is_some_and(|t| t.starts_with("2024-01-20") || t.starts_with("2024-01-32")))
    );

    let (old, _) = snapshot(&dir.join("data/customers/customers_2024-01-30.csv"));
    let (new, short) = snapshot(&dir.join("data/customers/customers_2024-01-31.csv"));
    assert_eq!(short.len(), 1);
    let removed: Vec<i64> = old
        .keys()
        .filter(|id| !new.contains_key(id))
        .copied()
        .collect();
    let added: Vec<i64> = new
        .keys()
        .filter(|id| !old.contains_key(id))
        .copied()
        .collect();
    let changed = old
        .iter()
        .filter(|(id, r)| new.get(id).is_some_and(|n| n != *r))
        .count();
    eprintln!(
        "day 31: removed {}, added {}, changed {changed}",
        removed.len(),
        added.len()
    );
    assert!((5..=20).contains(&removed.len()));
    assert!((8..=12).contains(&added.len()));
    assert!((20..70).contains(&changed));
    let max_old = old.keys().max().copied().unwrap_or_default();
    assert!(added.iter().all(|id| *id > max_old));

    // Orders of the new day may reference the new customers.
    let day31 = read_text(&orders_file(dir, 31));
    let referenced: BTreeSet<i64> = day31
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["order_ts"]
                .as_str()
                .is_some_and(|t| t.starts_with("2024-01-31"))
        })
        .filter_map(|v| v["customer_id"].as_i64())
        .collect();
    assert!(added.iter().any(|id| referenced.contains(id)));
    assert!(removed.iter().all(|id| !referenced.contains(id)));

    // The second call: no late file any more; yesterday's deletions come back.
    let s2 = next_day(dir).expect("next day 2");
    assert_eq!(s2.days, vec![date(2024, 2, 1)]);
    assert!(dir.join("data/orders/orders_2024-02-01.ndjson").exists());
    let (day32, _) = snapshot(&dir.join("data/customers/customers_2024-02-01.csv"));
    assert!(
        removed.iter().all(|id| day32.contains_key(id)),
        "deleted customers come back"
    );
    let state: serde_json::Value =
        serde_json::from_str(&read_text(&dir.join("data/.example.json"))).expect("state");
    assert_eq!(state["days_generated"], 32);
    assert_eq!(state["pending_late_days"], serde_json::json!([]));

    // Same days, same bytes, on a fresh project.
    let other = tempfile::tempdir().expect("tempdir");
    init_shop(other.path(), 1).expect("init other");
    next_day(other.path()).expect("next day other");
    next_day(other.path()).expect("next day other 2");
    assert_eq!(files(dir), files(other.path()));
}

#[test]
fn products_parquet_reads_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    init_shop(tmp.path(), 1).expect("init");
    let file = File::open(tmp.path().join("data/products/products.parquet")).expect("open parquet");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("reader")
        .build()
        .expect("build");
    let mut rows = 0;
    for batch in reader {
        let batch = batch.expect("batch");
        let names: Vec<_> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["product_id", "name", "category", "price"]);
        rows += batch.num_rows();
    }
    assert_eq!(rows, 200);
    let catalogue = data::products(SEED);
    let categories: BTreeSet<_> = catalogue.iter().map(|p| p.category).collect();
    assert_eq!(categories.len(), 8);
    assert!(
        catalogue
            .iter()
            .all(|p| (100..=50_000).contains(&p.price_cents))
    );
}

#[test]
fn errors_are_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        init_shop(tmp.path(), 0),
        Err(ExampleError::InvalidScale { .. })
    ));
    assert!(matches!(
        next_day(tmp.path()),
        Err(ExampleError::NotAnExample { .. })
    ));
    std::fs::write(tmp.path().join("strata.toml"), "[project]\nname = \"x\"\n").expect("write");
    assert!(matches!(
        init_shop(tmp.path(), 1),
        Err(ExampleError::AlreadyExists { .. })
    ));
    std::fs::create_dir_all(tmp.path().join("data")).expect("mkdir");
    std::fs::write(tmp.path().join("data/.example.json"), "{}").expect("write");
    assert!(matches!(
        next_day(tmp.path()),
        Err(ExampleError::NotAnExample { .. })
    ));
}

#[test]
fn project_files_load_as_a_project() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (rel, text) in project::PROJECT_FILES {
        let path = tmp.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    let p = strata_project::Project::load(tmp.path()).expect("the example project must load");
    assert_eq!(p.name, "shop");
    assert_eq!(
        p.sources.keys().collect::<Vec<_>>(),
        ["customers", "orders", "products"]
    );
    assert_eq!(
        p.models.keys().collect::<Vec<_>>(),
        [
            "gold.customer_lifetime_value",
            "gold.daily_revenue",
            "gold.fct_orders",
            "silver.customers",
            "silver.orders",
            "silver.products"
        ]
    );
}

/// Runs the models' SQL on DataFusion over a few hand-made bronze rows.
#[tokio::test]
async fn models_run_on_datafusion() {
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::prelude::SessionContext;

    let ctx = SessionContext::new();
    let run = |sql: String| {
        let ctx = ctx.clone();
        async move {
            let df = ctx.sql(&sql).await.unwrap_or_else(|e| panic!("{e}\n{sql}"));
            df.collect().await.unwrap_or_else(|e| panic!("{e}\n{sql}"))
        }
    };
    for schema in ["bronze", "silver", "gold"] {
        run(format!("create schema {schema}")).await;
    }
    let meta = "_ingested_at timestamp, _source varchar, _batch_id varchar";
    run(format!(
        "create table bronze.orders (order_id bigint, customer_id bigint, product_id bigint, quantity bigint, \
         unit_price decimal(10,2), status varchar, order_ts timestamp, {meta})"
    ))
    .await;
    run(format!(
        "create table bronze.customers (customer_id bigint, name varchar, email varchar, region varchar, \
         signup_date date, {meta})"
    ))
    .await;
    run(format!("create table bronze.products (product_id bigint, name varchar, category varchar, price double, {meta})"))
        .await;
    let f1 = "'data/orders/orders_2024-01-01.ndjson'";
    let f2 = "'data/orders/orders_2024-01-02.ndjson'";
    let t1 = "timestamp '2024-01-02T01:00:00'";
    let t2 = "timestamp '2024-01-03T01:00:00'";
    run(format!(
        "insert into bronze.orders values \
         (1, 10001, 1, 2, 10.0, 'placed', timestamp '2024-01-01T10:00:00', {t1}, {f1}, 'b1'), \
         (1, 10001, 1, 2, 10.0, 'placed', timestamp '2024-01-01T10:00:00', {t1}, {f1}, 'b1'), \
         (2, null, 1, 1, 10.0, 'placed', timestamp '2024-01-01T11:00:00', {t1}, {f1}, 'b1'), \
         (3, 10002, 2, 0, 5.5, 'placed', timestamp '2024-01-01T12:00:00', {t1}, {f1}, 'b1'), \
         (4, 10099, 1, 1, 10.0, 'cancelled', timestamp '2024-01-01T13:00:00', {t1}, {f1}, 'b1'), \
         (5, 10099, 2, 3, 5.5, 'placed', timestamp '2024-01-01T14:00:00', {t1}, {f1}, 'b1'), \
         (1, 10001, 1, 2, 10.0, 'shipped', timestamp '2024-01-01T10:00:00', {t2}, {f2}, 'b2'), \
         (6, 10002, 2, 1, 5.5, 'placed', timestamp '2024-01-02T09:30:00', {t2}, {f2}, 'b2')"
    ))
    .await;
    let c1 = "'data/customers/customers_2024-01-30.csv'";
    let c2 = "'data/customers/customers_2024-01-31.csv'";
    run(format!(
        "insert into bronze.customers values \
         (10001, 'Jane Doe', 'jane@example.com', 'north', date '2023-05-01', {t1}, {c1}, 'b1'), \
         (10002, 'John Smith', 'john@example.com', 'south', date '2023-06-01', {t1}, {c1}, 'b1'), \
         (10001, ' Jane Doe ', 'Jane@Example.com', 'east', date '2023-05-01', {t2}, {c2}, 'b2'), \
         (10002, 'John Smith', 'john@example.com', 'south', date '2023-06-01', {t2}, {c2}, 'b2'), \
         (null, 'Nobody', null, 'west', null, {t2}, {c2}, 'b2')"
    ))
    .await;
    run(format!(
        "insert into bronze.products values \
         (1, 'Classic Lamp', 'home', 10.0, {t1}, 'p', 'b1'), (2, 'Green Tea', 'grocery', 5.5, {t1}, 'p', 'b1')"
    ))
    .await;

    // The engine applies the model's expectations (quarantine rows without a
    // customer or with a quantity of zero or less) after the query.
    run(format!(
        "create table silver.orders as select * from ({}) as q \
         where coalesce(customer_id is not null, false) and coalesce(quantity > 0, false)",
        project::SILVER_ORDERS
    ))
    .await;
    run(format!(
        "create table silver.customers as select *, true as is_current from ({}) as m",
        project::SILVER_CUSTOMERS
    ))
    .await;
    run(format!(
        "create table silver.products as {}",
        project::SILVER_PRODUCTS
    ))
    .await;
    run(format!(
        "create table gold.fct_orders as {}",
        project::GOLD_FCT_ORDERS
    ))
    .await;
    run(format!(
        "create table gold.daily_revenue as {}",
        project::GOLD_DAILY_REVENUE
    ))
    .await;
    run(format!(
        "create table gold.customer_lifetime_value as {}",
        project::GOLD_CUSTOMER_LIFETIME_VALUE
    ))
    .await;

    let show = |sql: &'static str| {
        let run = &run;
        async move {
            pretty_format_batches(&run(sql.to_string()).await)
                .expect("format")
                .to_string()
        }
    };
    let orders = show("select order_id, customer_id, status, amount, order_date from silver.orders order by order_id").await;
    assert_eq!(
        norm(&orders),
        norm(
            "+----------+-------------+-----------+--------+------------+
| order_id | customer_id | status    | amount | order_date |
+----------+-------------+-----------+--------+------------+
| 1        | 10001       | shipped   | 20.00 | 2024-01-01 |
| 4        | 10099       | cancelled | 10.00 | 2024-01-01 |
| 5        | 10099       | placed    | 16.50 | 2024-01-01 |
| 6        | 10002       | placed    | 5.50  | 2024-01-02 |
+----------+-------------+-----------+--------+------------+"
        )
    );
    let customers =
        show("select customer_id, name, email, region from silver.customers order by customer_id")
            .await;
    assert_eq!(
        customers.trim(),
        "+-------------+------------+------------------+--------+
| customer_id | name       | email            | region |
+-------------+------------+------------------+--------+
| 10001       | Jane Doe   | jane@example.com | east   |
| 10002       | John Smith | john@example.com | south  |
+-------------+------------+------------------+--------+"
    );
    let revenue = show("select * from gold.daily_revenue order by order_date, region").await;
    assert_eq!(
        norm(&revenue),
        norm(
            "+------------+---------+--------+---------+
| order_date | region  | orders | revenue |
+------------+---------+--------+---------+
| 2024-01-01 | east    | 1      | 20.00  |
| 2024-01-01 | unknown | 1      | 16.50  |
| 2024-01-02 | south   | 1      | 5.50   |
+------------+---------+--------+---------+"
        )
    );
    let clv = show("select * from gold.customer_lifetime_value order by customer_id").await;
    assert_eq!(
        norm(&clv),
        norm("+-------------+------------+--------+------------------+-----------------+--------+----------------+
| customer_id | name       | region | first_order_date | last_order_date | orders | lifetime_value |
+-------------+------------+--------+------------------+-----------------+--------+----------------+
| 10001       | Jane Doe   | east   | 2024-01-01       | 2024-01-01      | 1      | 20.00         |
| 10002       | John Smith | south  | 2024-01-02       | 2024-01-02      | 1      | 5.50          |
+-------------+------------+--------+------------------+-----------------+--------+----------------+")
    );
    let fct =
        show("select order_id, region, category from gold.fct_orders order by order_id").await;
    assert!(fct.contains("| 4        | unknown | home     |"), "{fct}");
}

/// Table text with runs of spaces collapsed, so column padding does not matter.
fn norm(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
