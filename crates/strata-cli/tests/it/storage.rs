//! Object storage: the lake and the sources' files on S3 (the `moto` server)
//! and Azure Blob (Azurite), both started by the test on 127.0.0.1. Tables are
//! read back by the Python `deltalake` package, objects listed with boto3 and
//! azure-storage-blob (tests/storage/objects.py).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::TestProject;

/// An emulator process, killed when dropped.
pub(crate) struct Emulator {
    child: Child,
    pub(crate) endpoint: String,
    cloud: &'static str,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn storage_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/storage")
}

pub(crate) fn wait_for(port: u16, child: &mut Child, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited: {status} (scripts/test.sh installs it)");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The moto S3 server (PyPI `moto[server]`, installed by scripts/test.sh).
pub(crate) fn s3() -> Emulator {
    let port = free_port();
    let mut child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto (scripts/test.sh installs moto[server])");
    wait_for(port, &mut child, "moto_server");
    Emulator {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        cloud: "s3",
    }
}

/// Azurite's blob service (npm, installed under tests/storage by scripts/test.sh).
fn azurite() -> Emulator {
    let port = free_port();
    let bin = storage_dir().join("node_modules/.bin/azurite-blob");
    let mut child = Command::new(&bin)
        .args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--inMemoryPersistence",
            "--silent",
            "--skipApiVersionCheck",
            "--loose",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {} ({e}; scripts/test.sh installs it)", bin.display()));
    wait_for(port, &mut child, "azurite-blob");
    Emulator {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        cloud: "az",
    }
}

impl Emulator {
    /// Runs tests/storage/objects.py; returns stdout.
    pub(crate) fn objects(&self, args: &[&str]) -> String {
        let run = || {
            Command::new("python3")
                .arg(storage_dir().join("objects.py"))
                .args([self.cloud, &self.endpoint])
                .args(args)
                .output()
                .expect("python3")
        };
        let mut out = run();
        if !out.status.success() && args.first() == Some(&"read") {
            // The Python reader has been seen to abort once under load (as in
            // the example test): say so, and read once more.
            eprintln!(
                "python deltalake failed once, retrying: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out = run();
        }
        assert!(
            out.status.success(),
            "objects.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn put(&self, bucket: &str, key: &str, content: &[u8]) {
        let f = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(f.path(), content).expect("write");
        self.objects(&["put", bucket, key, f.path().to_str().expect("utf8")]);
    }

    pub(crate) fn keys(&self, bucket: &str) -> Vec<String> {
        self.objects(&["keys", bucket])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// A Delta table's rows (JSON lines, sorted) as the Python reader sees them.
    fn read(&self, table_url: &str) -> Vec<serde_json::Value> {
        self.objects(&["read", table_url])
            .lines()
            .map(|l| serde_json::from_str(l).expect("json row"))
            .collect()
    }
}

fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).expect("gzip");
    e.finish().expect("gzip")
}

/// Every file under `dir` that contains `needle` (secrets must not be stored).
fn files_containing(dir: &Path, needle: &str, skip: &Path) -> Vec<PathBuf> {
    let mut hits = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p != skip
                && std::fs::read(&p)
                    .map(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
                    .unwrap_or(false)
            {
                hits.push(p);
            }
        }
    }
    hits
}

const SECRET: &str = "s3cr3t-Zq9-never-stored";

#[test]
fn a_lake_and_sources_on_s3_run_end_to_end_and_read_back_independently() {
    let s3 = s3();
    s3.objects(&["mkbucket", "landing"]);
    s3.objects(&["mkbucket", "lake"]);
    s3.put(
        "landing",
        "orders/date=2024-01-01/part-0.csv",
        b"id,amount\n1,10.5\n2,x\n3,4\n",
    );
    s3.put(
        "landing",
        "orders/date=2024-01-02/part-0.csv.gz",
        &gzip("id,amount\n4,1\n5,2\n"),
    );
    s3.put("landing", "orders/README.txt", b"not data");

    let p = TestProject::new();
    p.write(
        "strata.toml",
        r#"[project]
name = "cloud"
lake = "s3://lake/shop"

[storage]
aws_endpoint = "${STRATA_TEST_S3_ENDPOINT}"
aws_access_key_id = "test-key"
aws_secret_access_key = "${STRATA_TEST_S3_SECRET}"
aws_region = "us-east-1"
aws_allow_http = "true"

[sources.orders]
format = "csv"
path = "s3://landing/orders/date=*/*.csv*"
columns = { id = "bigint", amount = "double" }
on_bad_rows = "quarantine"
"#,
    );
    p.write(
        "models/gold/daily.sql",
        "select date, count(*) as orders, sum(amount) as revenue from bronze.orders group by date",
    );
    let env = [
        ("STRATA_TEST_S3_ENDPOINT", s3.endpoint.as_str()),
        ("STRATA_TEST_S3_SECRET", SECRET),
    ];
    // Before anything is ingested, validation plans over the declared columns
    // plus the Hive folder's `date` (from the first object in the bucket).
    p.ok_env(&["validate"], &env);
    p.ok_env(&["run"], &env);
    // After, against the tables in the bucket.
    p.ok_env(&["validate"], &env);

    // The tables are in the bucket, and nothing landed on local disk.
    let keys = s3.keys("lake");
    for table in ["bronze/orders", "bronze/orders_quarantine", "gold/daily"] {
        assert!(
            keys.iter()
                .any(|k| k.starts_with(&format!("shop/{table}/_delta_log/"))),
            "no log for {table} in {keys:?}"
        );
    }
    assert!(!p.path().join("lake").exists(), "a local lake was created");

    // Strata and an independent reader see the same gold rows.
    let ours = p.ok_env(
        &[
            "sql",
            "--format",
            "csv",
            "select cast(date as varchar) as d, orders, revenue from gold.daily order by d",
        ],
        &env,
    );
    assert_eq!(
        ours.lines().collect::<Vec<_>>(),
        ["d,orders,revenue", "2024-01-01,2,14.5", "2024-01-02,2,3.0"]
    );
    let theirs = s3.read("s3://lake/shop/gold/daily");
    let got: Vec<(String, i64, f64)> = theirs
        .iter()
        .map(|r| {
            (
                r["date"].as_str().expect("date").to_string(),
                r["orders"].as_i64().expect("orders"),
                r["revenue"].as_f64().expect("revenue"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("2024-01-01".to_string(), 2, 14.5),
            ("2024-01-02".to_string(), 2, 3.0)
        ]
    );

    // The bad row is quarantined with its object's URL and line.
    let q = s3.read("s3://lake/shop/bronze/orders_quarantine");
    assert_eq!(q.len(), 1, "{q:?}");
    let row = q[0].to_string();
    assert!(
        row.contains("s3://landing/orders/date=2024-01-01/part-0.csv"),
        "{row}"
    );
    // Bronze rows carry their object's URL.
    let bronze = s3.read("s3://lake/shop/bronze/orders");
    assert_eq!(bronze.len(), 4);
    assert!(
        bronze.iter().all(|r| r["_source"]
            .as_str()
            .is_some_and(|s| s.starts_with("s3://landing/orders/date="))),
        "{bronze:?}"
    );

    // A new object is ingested alone on the next run; the others are not read again.
    s3.put(
        "landing",
        "orders/date=2024-01-03/part-0.csv",
        b"id,amount\n6,100\n",
    );
    p.ok_env(&["run"], &env);
    let tasks = p.ok_env(&["runs", "--format", "json", "--limit", "1"], &env);
    let run: serde_json::Value =
        serde_json::from_str(tasks.lines().next().expect("a run")).expect("json");
    let id = run["run_id"].as_str().expect("run id");
    let bronze_task: serde_json::Value = p
        .ok_env(&["runs", id, "--format", "json"], &env)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .find(|t| t["task"] == "bronze.orders")
        .expect("bronze task");
    assert_eq!(bronze_task["rows_read"], 1, "{bronze_task}");
    assert_eq!(s3.read("s3://lake/shop/bronze/orders").len(), 5);

    // The secret went to the client only: not into the state store, logs or lake.
    let hits = files_containing(p.path(), SECRET, &p.path().join("strata.toml"));
    assert!(hits.is_empty(), "the secret was written to {hits:?}");
}

#[test]
fn a_lake_and_sources_on_azure_blob_storage_run_end_to_end() {
    let az = azurite();
    az.objects(&["mkbucket", "landing"]);
    az.objects(&["mkbucket", "lake"]);
    az.put(
        "landing",
        "events/2024/01/a.ndjson",
        b"{\"id\": 1, \"kind\": \"view\"}\n{\"id\": 2, \"kind\": \"buy\"}\n",
    );
    az.put(
        "landing",
        "events/2024/02/b.ndjson",
        b"{\"id\": 3, \"kind\": \"view\"}\n",
    );
    let p = TestProject::new();
    p.write(
        "strata.toml",
        r#"[project]
name = "cloud"
lake = "az://lake/shop"

[storage]
azure_storage_use_emulator = "true"

[sources.events]
format = "ndjson"
path = "az://landing/events/**/*.ndjson"
"#,
    );
    p.write(
        "models/silver/views.sql",
        "select id from bronze.events where kind = 'view'",
    );
    let env = [("AZURITE_BLOB_STORAGE_URL", az.endpoint.as_str())];
    p.ok_env(&["run"], &env);
    let keys = az.keys("lake");
    assert!(
        keys.iter()
            .any(|k| k.starts_with("shop/silver/views/_delta_log/")),
        "{keys:?}"
    );
    assert!(!p.path().join("lake").exists());
    let ours = p.ok_env(
        &[
            "sql",
            "--format",
            "csv",
            "select id from silver.views order by id",
        ],
        &env,
    );
    assert_eq!(ours.lines().collect::<Vec<_>>(), ["id", "1", "3"]);
    let theirs: Vec<i64> = az
        .read("az://lake/shop/silver/views")
        .iter()
        .map(|r| r["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(theirs, [1, 3]);
    assert_eq!(az.read("az://lake/shop/bronze/events").len(), 3);
}

#[test]
fn storage_mistakes_get_clear_errors() {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        "[project]\nname = \"x\"\nlake = \"s3://lake/x\"\n[storage]\naws_endpiont = \"http://127.0.0.1:1\"\n",
    );
    let out = p.strata(&["validate"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`aws_endpiont` is not an object-store option"),
        "{err}"
    );

    // A bucket that does not exist: the run fails naming the source, no panic.
    let s3 = s3();
    p.write(
        "strata.toml",
        "[project]\nname = \"x\"\nlake = \"lake\"\n[storage]\naws_endpoint = \"${E}\"\naws_allow_http = \"true\"\naws_access_key_id = \"k\"\naws_secret_access_key = \"s\"\naws_region = \"us-east-1\"\n[sources.orders]\nformat = \"csv\"\npath = \"s3://missing-bucket/*.csv\"\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["run", "--project"])
        .arg(p.path())
        .env("E", &s3.endpoint)
        .env("NO_COLOR", "1")
        .output()
        .expect("run strata");
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("source `orders`"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
