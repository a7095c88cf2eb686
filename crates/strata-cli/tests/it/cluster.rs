//! The same projects on a Ballista cluster: one `strata scheduler` and two
//! `strata executor`s started by the test on 127.0.0.1, with the lake on S3
//! (the moto server). Every gold table must equal the local run's.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::storage::{free_port, s3, wait_for};
use crate::support::{Shop, TestProject, example_shop, strata_in};

/// A scheduler and two executors, killed when dropped.
struct Cluster {
    children: Vec<Child>,
    engine: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `strata scheduler` and two `strata executor`s whose object-store
/// credentials come from their environment, as on a real cluster.
fn cluster(s3_endpoint: &str) -> Cluster {
    let bin = env!("CARGO_BIN_EXE_strata");
    let port = free_port();
    let mut children = vec![];
    let aws = [
        ("AWS_ENDPOINT", s3_endpoint),
        ("AWS_ACCESS_KEY_ID", "test-key"),
        ("AWS_SECRET_ACCESS_KEY", "test-secret"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    let mut scheduler = Command::new(bin)
        .args(["scheduler", "--bind-port", &port.to_string()])
        .envs(aws)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start strata scheduler");
    wait_for(port, &mut scheduler, "strata scheduler");
    children.push(scheduler);
    for _ in 0..2 {
        let (flight, grpc) = (free_port(), free_port());
        let mut executor = Command::new(bin)
            .args([
                "executor",
                "--bind-port",
                &flight.to_string(),
                "--bind-grpc-port",
                &grpc.to_string(),
                "--scheduler-port",
                &port.to_string(),
                "--concurrent-tasks",
                "2",
            ])
            .envs(aws)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start strata executor");
        wait_for(flight, &mut executor, "strata executor");
        children.push(executor);
    }
    // Executors register with the scheduler on their first heartbeat.
    std::thread::sleep(std::time::Duration::from_secs(2));
    Cluster {
        children,
        engine: format!("ballista://127.0.0.1:{port}"),
    }
}

/// Points a project's lake at `lake` on S3 and its engine at the cluster.
fn on_cluster(project: &Path, lake: &str, s3_endpoint: &str, engine: &str, fallback: &str) {
    let cfg = project.join("strata.toml");
    let text = std::fs::read_to_string(&cfg).expect("strata.toml");
    let extra =
        format!("[project]\nlake = \"{lake}\"\nengine = \"{engine}\"\nfallback = \"{fallback}\"\n");
    let mut text = text.replacen("[project]\n", &extra, 1);
    text.push_str(&format!(
        "\n[storage]\naws_endpoint = \"{s3_endpoint}\"\naws_access_key_id = \"test-key\"\naws_secret_access_key = \"test-secret\"\naws_region = \"us-east-1\"\naws_allow_http = \"true\"\n"
    ));
    std::fs::write(cfg, text).expect("write strata.toml");
}

/// Every row of a table, as sorted CSV lines (header first).
fn rows(shop: &Shop, table: &str) -> Vec<String> {
    let mut lines = shop.sql(&format!("select * from {table}"));
    let header = lines.remove(0);
    lines.sort();
    lines.insert(0, header);
    lines
}

fn gold_tables(project: &Path) -> Vec<String> {
    let mut tables: Vec<String> = std::fs::read_dir(project.join("models/gold"))
        .expect("models/gold")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".sql").map(|n| format!("gold.{n}"))
        })
        .collect();
    tables.sort();
    tables
}

fn assert_same_gold(local: &Shop, remote: &Shop) {
    let tables = gold_tables(&local.0);
    assert!(!tables.is_empty());
    for t in tables {
        let (a, b) = (rows(local, &t), rows(remote, &t));
        assert!(a.len() > 1, "{t} is empty");
        assert!(
            a == b,
            "{t} differs: {} local rows, {} on the cluster",
            a.len(),
            b.len()
        );
    }
}

fn run_output(shop: &Shop, args: &[&str]) -> (bool, String) {
    let out = strata_in(&shop.0, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_example_project_on_a_cluster_equals_the_local_run() {
    let s3 = s3();
    s3.objects(&["mkbucket", "lake"]);
    let c = cluster(&s3.endpoint);

    let (l, r) = (TestProject::new(), TestProject::new());
    let (local, remote) = (example_shop(&l), example_shop(&r));
    local.ok(&["run"]);
    on_cluster(&remote.0, "s3://lake/shop", &s3.endpoint, &c.engine, "fail");

    let (ok, out) = run_output(&remote, &["run"]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("engine: {}", c.engine)), "{out}");
    // The lake is in the bucket, not on local disk.
    assert!(!remote.0.join("lake").exists());
    assert!(
        s3.keys("lake")
            .iter()
            .any(|k| k.starts_with("shop/gold/daily_revenue/_delta_log/")),
        "no gold table in the bucket"
    );
    assert_same_gold(&local, &remote);
    // The executors read the sources: each bronze task says so, and bronze
    // and its quarantine hold what the local read gave.
    let tasks = remote.tasks();
    for s in ["bronze.orders", "bronze.customers", "bronze.products"] {
        let note = tasks[s]["message"].as_str().unwrap_or_default();
        assert!(note.contains("read on the cluster"), "{s}: {note}");
    }
    for q in [
        "select _source, count(*) as n, sum(order_id) as ids, sum(unit_price) as price from bronze.orders group by _source order by _source",
        "select _source, count(*) as n, sum(customer_id) as ids from bronze.customers group by _source order by _source",
        "select _source, _line, _error, _raw from bronze.orders_quarantine order by _source, _line",
        "select count(*) as n from bronze.products",
    ] {
        let (a, b) = (local.sql(q), remote.sql(q));
        assert!(a.len() > 1, "{q}: nothing locally");
        assert_eq!(a, b, "{q}");
    }
    assert!(
        s3.keys("lake")
            .iter()
            .any(|k| k.starts_with("shop/bronze/orders/part-") && k.ends_with(".parquet")),
        "no bronze file written by the executors"
    );
    // So are the model's quarantined rows (into a folder of the table).
    let staged = |k: &String| {
        k.strip_prefix("shop/silver/orders_quarantine/part-")
            .is_some_and(|rest| rest.contains('/') && rest.ends_with(".parquet"))
    };
    assert!(
        s3.keys("lake").iter().any(staged),
        "no quarantine file written by the executors"
    );
    let q = "select count(*) as n from silver.orders_quarantine";
    assert_eq!(local.sql(q), remote.sql(q));
    // The executors wrote the gold files (into a folder of the table), and an
    // independent reader reads them.
    assert!(
        s3.keys("lake")
            .iter()
            .any(|k| k.starts_with("shop/gold/daily_revenue/part-") && k.ends_with(".parquet")),
        "no file written by the executors"
    );
    // Their statistics are in the log (the reader parses bounds for every
    // file), so readers can skip them by value.
    let files = s3.objects(&["stats", "s3://lake/shop/gold/daily_revenue"]);
    assert!(!files.trim().is_empty(), "no data files");
    for line in files.lines() {
        let st: serde_json::Value = serde_json::from_str(line).expect("stats line");
        assert!(st["num_records"].as_i64().is_some_and(|n| n > 0), "{line}");
        assert!(st["min.order_date"].is_string(), "{line}");
        assert!(st["max.order_date"].is_string(), "{line}");
        assert_eq!(st["null_count.order_date"], 0, "{line}");
    }
    let read = s3.objects(&["read", "s3://lake/shop/gold/daily_revenue"]);
    assert_eq!(
        read.lines().count() + 1,
        rows(&local, "gold.daily_revenue").len()
    );

    // The next day merges into silver.orders: on the cluster the table is
    // rewritten there (kept rows plus the new ones) instead of delta-rs's
    // MERGE, so no fallback is needed.
    local.ok(&["example", "next-day"]);
    local.ok(&["run"]);
    remote.ok(&["example", "next-day"]);
    let (ok, out) = run_output(&remote, &["run"]);
    assert!(ok, "{out}");
    assert!(!out.contains("fallback"), "something fell back:\n{out}");
    let merged = remote.tasks();
    let note = merged["silver.orders"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(note.contains("rewritten on the cluster"), "{note}");
    let local_tasks = local.tasks();
    for k in ["rows_read", "rows_written"] {
        assert_eq!(
            merged["silver.orders"][k], local_tasks["silver.orders"][k],
            "silver.orders {k}"
        );
    }
    let keys = "select count(*) as n, count(distinct order_id) as k, sum(cast(order_id as bigint) % 9973) as h from silver.orders";
    assert_eq!(remote.sql(keys), local.sql(keys));
    assert_same_gold(&local, &remote);
    // The SCD2 dimension (rebuilt on the cluster) equals too.
    assert_eq!(
        rows(&local, "silver.customers").len(),
        rows(&remote, "silver.customers").len()
    );
}

/// Writes the 8 TPC-H tables at scale factor `sf` as `landing/TABLE/TABLE.csv`.
fn tpch_landing(dir: &Path, sf: f64) {
    use tpchgen::csv::*;
    use tpchgen::generators::*;
    macro_rules! table {
        ($name:literal, $gen:ident, $csv:ident) => {{
            let d = dir.join("landing").join($name);
            std::fs::create_dir_all(&d).expect("mkdir");
            let f = std::fs::File::create(d.join(concat!($name, ".csv"))).expect("create");
            let mut w = std::io::BufWriter::new(f);
            writeln!(w, "{}", $csv::header()).expect("write");
            for row in $gen::new(sf, 1, 1).iter() {
                writeln!(w, "{}", $csv::new(row)).expect("write");
            }
            w.flush().expect("flush");
        }};
    }
    table!("region", RegionGenerator, RegionCsv);
    table!("nation", NationGenerator, NationCsv);
    table!("part", PartGenerator, PartCsv);
    table!("supplier", SupplierGenerator, SupplierCsv);
    table!("partsupp", PartSuppGenerator, PartSuppCsv);
    table!("customer", CustomerGenerator, CustomerCsv);
    table!("orders", OrderGenerator, OrderCsv);
    table!("lineitem", LineItemGenerator, LineItemCsv);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

#[test]
fn the_tpch_medallion_on_a_cluster_equals_the_local_run() {
    let s3 = s3();
    s3.objects(&["mkbucket", "lake"]);
    let c = cluster(&s3.endpoint);
    let bench = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/tpch/project");

    let local = TestProject::new();
    copy_dir(&bench, local.path());
    tpch_landing(local.path(), 0.01);
    local.ok(&["run"]);

    let remote = TestProject::new();
    copy_dir(&bench, remote.path());
    copy_dir(
        &local.path().join("landing"),
        &remote.path().join("landing"),
    );
    on_cluster(
        remote.path(),
        "s3://lake/tpch",
        &s3.endpoint,
        &c.engine,
        "fail",
    );
    let (ok, out) = run_output(&remote, &["run"]);
    assert!(ok, "{out}");
    assert!(!out.contains("ran here (fallback)"), "{out}");
    assert_same_gold(&local, &remote);
    let tasks = remote.tasks();
    let note = tasks["bronze.lineitem"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(note.contains("read on the cluster"), "{note}");
    let q = "select count(*) as n, sum(cast(l_orderkey as bigint)) as k from bronze.lineitem";
    assert_eq!(local.sql(q), remote.sql(q));
}

#[test]
fn database_and_file_sources_are_read_by_the_executors() {
    use crate::databases::{PG, pg, unique};
    let s3 = s3();
    s3.objects(&["mkbucket", "lake"]);
    let c = cluster(&s3.endpoint);
    let schema = unique("strata_cluster");
    pg(&format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.codes (id bigint, code text, n text); INSERT INTO {schema}.codes VALUES (1, 'a', '1'), (2, 'b', 'x'), (3, 'c', '3');"
    ));
    let p = TestProject::new();
    p.write(
        "strata.toml",
        &format!("[project]\nname = \"mixed\"\n[sources.codes]\nformat = \"postgres\"\nurl = \"{PG}\"\ntable = \"{schema}.codes\"\nmode = \"cursor\"\ncursor = \"id\"\ncolumns = {{ id = \"bigint\", code = \"string\", n = \"bigint\" }}\n\n[sources.ev]\nformat = \"csv\"\npath = \"data/*.csv\"\ncolumns = {{ id = \"bigint\", amount = \"bigint\" }}\n\n[[sources.ev.checks]]\nexpression = \"amount >= 0\"\non_fail = \"quarantine\"\n\n[[sources.ev.checks]]\nexpression = \"id < 100\"\n"),
    );
    p.write("data/ev_1.csv", "id,amount\n1,5\n2,-1\n3,7\n");
    on_cluster(p.path(), "s3://lake/mixed", &s3.endpoint, &c.engine, "fail");
    // Both sources are read by the executors, and the checked source's
    // checks audit its written files on the cluster before the commit.
    let shop = Shop(p.path().to_path_buf());
    let (ok, out) = run_output(&shop, &["run"]);
    assert!(ok, "{out}");
    assert!(!out.contains("fallback"), "{out}");
    let tasks = shop.tasks();
    for t in ["bronze.codes", "bronze.ev"] {
        let note = tasks[t]["message"].as_str().unwrap_or_default();
        assert!(note.contains("read on the cluster"), "{t}: {note}");
    }
    // The executor typed the rows as locally: the bad value is quarantined.
    assert_eq!(shop.count("select count(*) from bronze.codes"), 2);
    assert_eq!(
        shop.count("select count(*) from bronze.codes_quarantine"),
        1
    );
    // The expectation quarantined the negative amount, as locally: the
    // kept rows were written again without it, and the file's account says so.
    assert_eq!(shop.count("select sum(id) from bronze.ev"), 4);
    assert_eq!(shop.count("select count(*) from bronze.ev"), 2);
    assert_eq!(
        shop.count("select count(*) from bronze.ev_quarantine where _source = 'data/ev_1.csv'"),
        1
    );
    assert_eq!(tasks["bronze.ev"]["rows_written"], 2, "{tasks:?}");
    assert_eq!(tasks["bronze.ev"]["rows_quarantined"], 1, "{tasks:?}");

    // The next run reads only the rows past the watermark; an error check
    // that fails on the cluster publishes nothing of its batch.
    pg(&format!("INSERT INTO {schema}.codes VALUES (4, 'd', '4');"));
    p.write("data/ev_2.csv", "id,amount\n4,1\n200,3\n");
    let (ok, out) = run_output(&shop, &["run"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("checks failed, nothing published (bronze.ev stays at version")
            && out.contains("id < 100"),
        "{out}"
    );
    let tasks = shop.tasks();
    assert_eq!(tasks["bronze.codes"]["rows_read"], 1, "{tasks:?}");
    assert_eq!(shop.count("select sum(id) from bronze.codes"), 8);
    assert_eq!(shop.count("select count(*) from bronze.ev"), 2);
    // Fixed, the file is read again, as if the failed batch never was.
    p.write("data/ev_2.csv", "id,amount\n4,1\n5,3\n");
    let (ok, out) = run_output(&shop, &["run"]);
    assert!(ok, "{out}");
    assert_eq!(shop.count("select sum(id) from bronze.ev"), 13);
    assert_eq!(shop.count("select count(*) from bronze.ev"), 4);
    // A project of `toml` and `files` on the cluster (its lake at
    // s3://lake/NAME), run once: the run fails; its output.
    let refused = |name: &str, toml: &str, files: &[(&str, &str)]| {
        let t = TestProject::new();
        t.write("strata.toml", toml);
        for (file, text) in files {
            t.write(file, text);
        }
        let lake = format!("s3://lake/{name}");
        on_cluster(t.path(), &lake, &s3.endpoint, &c.engine, "fail");
        let (ok, out) = run_output(&Shop(t.path().to_path_buf()), &["run"]);
        assert!(!ok, "{out}");
        out
    };
    // A database the executors cannot reach is named.
    let out = refused(
        "bad",
        "[project]\nname = \"bad\"\n[sources.gone]\nformat = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:1/test\"\ntable = \"t\"\n",
        &[],
    );
    assert!(
        out.contains("source `gone`") && out.contains("cannot connect"),
        "{out}"
    );

    // Under on_bad_rows = "fail", the executors' bad row stops the batch,
    // named by file and line, and nothing of it is committed.
    let out = refused(
        "strict",
        "[project]\nname = \"strict\"\n[sources.ev]\nformat = \"csv\"\npath = \"data/*.csv\"\non_bad_rows = \"fail\"\ncolumns = { id = \"bigint\" }\n",
        &[
            ("data/a.csv", "id\n1\n2\n"),
            ("data/b.csv", "id\n3\nfour\n"),
        ],
    );
    assert!(out.contains("data/b.csv:3:"), "{out}");
    assert!(
        !s3.keys("lake")
            .iter()
            .any(|k| k.starts_with("strict/bronze/ev/")),
        "files of a refused batch were left: {:?}",
        s3.keys("lake")
    );

    // A time_column source whose expectations remove rows is read here (or
    // refused without fallback): the executors count its intervals' rows as
    // they read, before the checks.
    let out = refused(
        "timed",
        "[project]\nname = \"timed\"\n[sources.ev]\nformat = \"csv\"\npath = \"data/*.csv\"\ntime_column = \"day\"\ncolumns = { id = \"bigint\", day = \"date\" }\n\n[[sources.ev.checks]]\nexpression = \"id > 0\"\non_fail = \"drop\"\n",
        &[("data/a.csv", "id,day\n1,2024-01-01\n-2,2024-01-02\n")],
    );
    assert!(
        out.contains("whose expectations remove rows from the intervals of its time_column")
            && out.contains("fallback = \"local\""),
        "{out}"
    );
}

#[test]
fn a_cluster_that_does_not_answer_is_named() {
    let t = TestProject::new();
    let p = example_shop(&t);
    let port = free_port();
    let (ok, out) = run_output(
        &p,
        &["--engine", &format!("ballista://127.0.0.1:{port}"), "run"],
    );
    assert!(!ok);
    assert!(
        out.contains(&format!("engine ballista://127.0.0.1:{port}"))
            && out.contains("strata scheduler"),
        "{out}"
    );
    // Nothing was built.
    assert!(!p.0.join("lake/gold").exists());
    let (ok, out) = run_output(&p, &["--engine", "ballista://nowhere", "run"]);
    assert!(!ok);
    assert!(out.contains("ballista://HOST:PORT"), "{out}");
}

#[test]
fn a_partitioned_model_replaces_its_intervals_on_the_cluster() {
    let s3 = s3();
    s3.objects(&["mkbucket", "lake"]);
    let c = cluster(&s3.endpoint);
    let model = "/*\nmaterialized = \"incremental\"\nstrategy = \"replace_range\"\npartition_by = \"day\"\ngrain = \"day\"\n*/\nselect id, cast(at as date) as day, amount from bronze.ev\nwhere at >= :start and at < :end\n";
    let project = |p: &TestProject| {
        p.write(
            "strata.toml",
            "[project]\nname = \"parts\"\n[sources.ev]\nformat = \"csv\"\npath = \"data/*.csv\"\ncolumns = { id = \"bigint\", at = \"timestamp\", amount = \"bigint\" }\n",
        );
        p.write("models/silver/events.sql", model);
        p.write(
            "models/silver/totals.sql",
            "select id, amount from bronze.ev\n",
        );
        p.write(
            "data/ev_1.csv",
            "id,at,amount\n1,2024-01-01T10:00:00,5\n2,2024-01-01T11:00:00,5\n3,2024-01-02T09:00:00,1\n",
        );
    };
    let (local, remote) = (TestProject::new(), TestProject::new());
    project(&local);
    project(&remote);
    on_cluster(
        remote.path(),
        "s3://lake/parts",
        &s3.endpoint,
        &c.engine,
        "fail",
    );
    let range = ["run", "--start", "2024-01-01", "--end", "2024-01-03"];
    local.ok(&range);
    // The first build writes the table whole, on the cluster.
    let (ok, out) = run_output(&remote, &range);
    assert!(ok, "{out}");
    // Replacing intervals of the existing table: the executors rewrite the
    // files holding rows of those intervals, and Strata commits them.
    local.write("data/ev_2.csv", "id,at,amount\n4,2024-01-02T23:00:00,7\n");
    remote.write("data/ev_2.csv", "id,at,amount\n4,2024-01-02T23:00:00,7\n");
    local.ok(&range);
    let (ok, out) = run_output(&remote, &range);
    assert!(ok, "{out}");
    assert!(!out.contains("fallback"), "{out}");
    let tasks = remote.tasks();
    let note = tasks["silver.events"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(note.contains("replaced"), "{note}");
    assert_eq!(tasks["silver.events"]["rows_written"], 4, "{tasks:?}");
    // A later interval is added, then the earlier ones replaced again: the
    // later rows stay.
    let later = ["run", "--start", "2024-01-03", "--end", "2024-01-04"];
    for p in [&local, &remote] {
        p.write("data/ev_3.csv", "id,at,amount\n5,2024-01-03T08:00:00,9\n");
    }
    local.ok(&later);
    let (ok, out) = run_output(&remote, &later);
    assert!(ok, "{out}");
    for p in [&local, &remote] {
        p.write("data/ev_4.csv", "id,at,amount\n6,2024-01-01T12:00:00,1\n");
    }
    local.ok(&range);
    let (ok, out) = run_output(&remote, &range);
    assert!(ok, "{out}");
    assert_eq!(
        rows(&local, "silver.events"),
        rows(&remote, "silver.events")
    );
    assert_eq!(rows(&remote, "silver.events").len(), 7);

    // A table model whose columns change is rebuilt on the cluster: the
    // executors write its files and the commit records the new schema.
    for p in [&local, &remote] {
        p.write(
            "models/silver/totals.sql",
            "select id, amount, amount * 2 as twice from bronze.ev\n",
        );
    }
    local.ok(&range);
    let (ok, out) = run_output(&remote, &range);
    assert!(ok, "{out}");
    assert!(!out.contains("fallback"), "{out}");
    assert_eq!(
        rows(&local, "silver.totals"),
        rows(&remote, "silver.totals")
    );
    assert!(rows(&remote, "silver.totals")[0].contains("twice"));
    let files = s3.objects(&["files", "s3://lake/parts/silver/totals"]);
    assert!(!files.trim().is_empty(), "no files");
    for f in files.lines() {
        let rest = f.strip_prefix("part-").unwrap_or_default();
        assert!(rest.contains('/'), "{f} was not written by the executors");
    }
    let read = s3.objects(&["read", "s3://lake/parts/silver/totals"]);
    assert!(read.lines().all(|l| l.contains("\"twice\"")), "{read}");
}
