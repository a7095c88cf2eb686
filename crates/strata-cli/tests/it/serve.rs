//! `strata serve` end to end on the shop example: real `psql` and a real
//! Postgres driver (tokio-postgres, extended protocol) against the SQL
//! endpoint; the HTTP API route by route with read and admin tokens; the
//! OpenAPI document through `openapi-spec-validator`; query results read back
//! by pyarrow; and the dashboard in headless Chromium (playwright-core).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Shop, TestProject};

const READ_TOKEN: &str = "read-token-0123456789abcdef";
const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";
const ANALYST_PASSWORD: &str = "analyst-secret";
const ADMIN_PASSWORD: &str = "admin-secret";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A `strata serve` process; killed on drop.
struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("ANALYST_PASSWORD", ANALYST_PASSWORD),
        ("ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("READ_TOKEN", READ_TOKEN),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
    ]
}

/// The shop example, run once, with `[serve]` logins and tokens from the environment.
fn shop() -> (TestProject, Shop, u16, u16) {
    shop_with("", true)
}

/// The shop example with `extra` keys under `[serve]`, run once if `run`.
fn shop_with(extra: &str, run: bool) -> (TestProject, Shop, u16, u16) {
    let p = TestProject::new();
    let dir = crate::support::example_shop(&p).0;
    let (http, sql) = (free_port(), free_port());
    let toml = dir.join("strata.toml");
    let mut text = std::fs::read_to_string(&toml).expect("toml");
    text.push_str(&format!(
        r#"
[serve]
http = "127.0.0.1:{http}"
sql = "127.0.0.1:{sql}"
{extra}

[serve.users.analyst]
password = "${{ANALYST_PASSWORD}}"

[serve.users.ops]
password = "${{ADMIN_PASSWORD}}"
role = "admin"

[serve.tokens.dashboard]
token = "${{READ_TOKEN}}"

[serve.tokens.ops]
token = "${{ADMIN_TOKEN}}"
scope = "admin"
"#
    ));
    std::fs::write(&toml, text).expect("write toml");
    let shop = Shop(dir);
    if run {
        shop.ok(&["run"]);
    }
    (p, shop, http, sql)
}

/// Starts `strata serve` and waits for its HTTP (and SQL, if given) port.
fn serve(shop: &Shop, http: u16, sql: Option<u16>) -> Server {
    let log = std::fs::File::create(shop.0.join("serve.log")).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--project"])
        .arg(&shop.0)
        .envs(env())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("serve");
    let server = Server { child };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = get(http, "/healthz", None).0 == 200
            && sql.is_none_or(|sql| std::net::TcpStream::connect(("127.0.0.1", sql)).is_ok());
        if up {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "strata serve did not come up: {}",
            std::fs::read_to_string(shop.0.join("serve.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One HTTP/1.0 request (so the body is not chunked): status and body.
fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Vec<u8>) {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, vec![]);
    };
    let mut req = format!("{method} {path} HTTP/1.0\r\nhost: 127.0.0.1\r\n");
    if let Some(t) = token {
        req.push_str(&format!("authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if method == "POST" {
        req.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    if s.write_all(req.as_bytes()).is_err() {
        return (0, vec![]);
    }
    let mut resp = vec![];
    let _ = s.read_to_end(&mut resp);
    let Some(split) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (0, resp);
    };
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, resp[split + 4..].to_vec())
}

fn get(port: u16, path: &str, token: Option<&str>) -> (u16, Vec<u8>) {
    request(port, "GET", path, token, None)
}

fn get_json(port: u16, path: &str, token: &str) -> serde_json::Value {
    let (status, body) = get(port, path, Some(token));
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn psql(port: u16, user: &str, password: &str, sql: &str) -> Output {
    Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
        ])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            user,
            "-d",
            "shop",
        ])
        .args(["-c", sql])
        .env("PGPASSWORD", password)
        .env("PGSSLMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql (scripts/test.sh installs postgresql-client)")
}

fn psql_ok(port: u16, user: &str, password: &str, sql: &str) -> String {
    let out = psql(port, user, password, sql);
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn psql_err(port: u16, user: &str, password: &str, sql: &str) -> String {
    let out = psql(port, user, password, sql);
    assert!(
        !out.status.success(),
        "psql {sql} should fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn psql_reads_live_data_and_is_refused_writes_hidden_layers_and_wrong_passwords() {
    let (_p, shop, http, sql) = shop();
    let expected = shop.count("select count(*) from gold.daily_revenue");
    let _server = serve(&shop, http, Some(sql));

    // Reads, through the simple protocol.
    let n: i64 = psql_ok(
        sql,
        "analyst",
        ANALYST_PASSWORD,
        "select count(*) from gold.daily_revenue",
    )
    .parse()
    .expect("a number");
    assert_eq!(n, expected);
    // psql's catalog queries work, and list only what the login may see.
    let dt = psql_ok(sql, "analyst", ANALYST_PASSWORD, "\\dt gold.*");
    assert!(dt.contains("daily_revenue"), "{dt}");
    let schemas = psql_ok(
        sql,
        "analyst",
        ANALYST_PASSWORD,
        "select distinct table_schema from information_schema.tables order by 1",
    );
    assert!(!schemas.contains("bronze"), "{schemas}");
    assert!(
        schemas.contains("gold") && schemas.contains("silver"),
        "{schemas}"
    );

    // Every kind of write is refused with SQLSTATE 25006.
    for stmt in [
        "insert into gold.daily_revenue select * from gold.daily_revenue",
        "update gold.daily_revenue set revenue = 0",
        "delete from gold.daily_revenue",
        "create table gold.x as select 1",
        "drop table gold.daily_revenue",
        "copy gold.daily_revenue to '/tmp/strata-serve-copy.csv'",
        "create external table x stored as csv location '/etc/passwd'",
        "set datafusion.execution.batch_size = 1",
    ] {
        let err = psql_err(sql, "ops", ADMIN_PASSWORD, stmt);
        assert!(
            err.contains("25006") || err.contains("read-only") || err.contains("42601"),
            "{stmt}: {err}"
        );
        assert!(!err.contains("XX000"), "{stmt}: {err}");
    }
    for stmt in [
        "insert into gold.daily_revenue select * from gold.daily_revenue",
        "copy gold.daily_revenue to '/tmp/strata-serve-copy.csv'",
        "create external table x stored as csv location '/etc/passwd'",
        "set datafusion.execution.batch_size = 1",
        "drop table gold.daily_revenue",
    ] {
        let err = psql_err(sql, "ops", ADMIN_PASSWORD, stmt);
        assert!(err.contains("25006"), "{stmt}: {err}");
    }
    assert!(!Path::new("/tmp/strata-serve-copy.csv").exists());
    // Still there, unchanged.
    assert_eq!(
        psql_ok(
            sql,
            "analyst",
            ANALYST_PASSWORD,
            "select count(*) from gold.daily_revenue"
        ),
        expected.to_string()
    );

    // A hidden layer: bronze is not there for a user, and is for an admin.
    let err = psql_err(
        sql,
        "analyst",
        ANALYST_PASSWORD,
        "select count(*) from bronze.orders",
    );
    assert!(err.contains("bronze"), "{err}");
    let bronze: i64 = psql_ok(
        sql,
        "ops",
        ADMIN_PASSWORD,
        "select count(*) from bronze.orders",
    )
    .parse()
    .expect("a number");
    assert!(bronze > 0);

    // Wrong password, unknown login.
    let err = psql_err(sql, "analyst", "wrong", "select 1");
    assert!(
        err.to_lowercase()
            .contains("password authentication failed"),
        "{err}"
    );
    let err = psql_err(sql, "mallory", "x", "select 1");
    assert!(
        err.to_lowercase()
            .contains("password authentication failed"),
        "{err}"
    );

    // The extended protocol (a real driver, bind parameters).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The connection outlives this block: a statement prepared now is run
    // again after the next run, and must see its commit.
    let mut bg = tokio::task::JoinSet::new();
    let (client, prepared) = rt.block_on(async {
        let conn = format!(
            "host=127.0.0.1 port={sql} user=analyst password={ANALYST_PASSWORD} dbname=shop"
        );
        let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
            .await
            .expect("connect");
        bg.spawn(connection);
        let rows = client
            .query(
                "select count(*) from silver.orders where quantity > $1",
                &[&0i64],
            )
            .await
            .expect("a bound query");
        let n: i64 = rows[0].get(0);
        assert!(n > 0);
        let err = client
            .execute(
                "insert into gold.daily_revenue select * from gold.daily_revenue",
                &[],
            )
            .await
            .expect_err("a write through the extended protocol");
        assert_eq!(err.code().map(|c| c.code()), Some("25006"), "{err:?}");
        let err = client
            .query("select count(*) from bronze.orders", &[])
            .await
            .expect_err("a hidden layer through the extended protocol");
        assert!(
            err.to_string().contains("bronze") || format!("{err:?}").contains("bronze"),
            "{err:?}"
        );
        let prepared = client
            .prepare("select count(*) from silver.orders where order_id > $1")
            .await
            .expect("prepare");
        (client, prepared)
    });

    // psycopg (bind parameters through the extended protocol).
    let script = format!(
        r#"
import psycopg
with psycopg.connect("host=127.0.0.1 port={sql} user=analyst password={ANALYST_PASSWORD} dbname=shop") as c:
    cur = c.cursor()
    cur.execute("select count(*) from silver.orders where status = %s", ("shipped",))
    print(cur.fetchone()[0])
    try:
        cur.execute("delete from gold.daily_revenue")
        print("no error")
    except psycopg.Error as e:
        print(e.sqlstate)
"#
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 (scripts/test.sh installs psycopg)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(
        lines.first().and_then(|n| n.parse::<i64>().ok()),
        Some(shop.count("select count(*) from silver.orders where status = 'shipped'")),
        "{printed}"
    );
    assert_ne!(lines.get(1), Some(&"no error"), "{printed}");

    // Time travel: not before the table existed.
    let err = psql_err(
        sql,
        "analyst",
        ANALYST_PASSWORD,
        "select count(*) from silver.\"orders@2000-01-01\"",
    );
    assert!(err.contains("did not exist yet"), "{err}");

    // Time travel, and a new run seen by the running server.
    let v0: i64 = psql_ok(
        sql,
        "analyst",
        ANALYST_PASSWORD,
        "select count(*) from silver.\"orders@v0\"",
    )
    .parse()
    .expect("a number");
    let before: i64 = psql_ok(
        sql,
        "analyst",
        ANALYST_PASSWORD,
        "select count(*) from silver.orders",
    )
    .parse()
    .expect("a number");
    assert_eq!(v0, before);
    let count_prepared = |client: &tokio_postgres::Client| -> i64 {
        rt.block_on(async {
            let rows = client.query(&prepared, &[&-1i64]).await.expect("prepared");
            rows[0].get(0)
        })
    };
    assert_eq!(count_prepared(&client), before);
    shop.ok(&["example", "next-day"]);
    shop.ok(&["run"]);
    let after: i64 = psql_ok(
        sql,
        "analyst",
        ANALYST_PASSWORD,
        "select count(*) from silver.orders",
    )
    .parse()
    .expect("a number");
    assert!(
        after > before,
        "the server still shows {before} rows, not {after}"
    );
    assert_eq!(after, shop.count("select count(*) from silver.orders"));
    assert_eq!(
        count_prepared(&client),
        after,
        "a statement prepared before the run still reads the old snapshot"
    );
    let still_v0: i64 = psql_ok(
        sql,
        "analyst",
        ANALYST_PASSWORD,
        "select count(*) from silver.\"orders@v0\"",
    )
    .parse()
    .expect("a number");
    assert_eq!(still_v0, v0);
}

#[test]
fn the_api_checks_every_route_and_the_dashboard_runs_in_chromium() {
    let (_p, shop, http, sql) = shop();
    let _server = serve(&shop, http, Some(sql));

    // The OpenAPI document validates, and lists what is served.
    let (status, doc) = get(http, "/api/openapi.json", None);
    assert_eq!(status, 200);
    let spec = shop.0.join("openapi.json");
    std::fs::write(&spec, &doc).expect("write spec");
    let out = Command::new("python3")
        .args(["-c", "import sys, json; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1])))"])
        .arg(&spec)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&doc).expect("json");

    // Every documented route: 401 without a token (but the two public ones),
    // and the admin-only ones 403 with a read token.
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let concrete = path
            .replace("{name}", "gold.daily_revenue")
            .replace("{id}", "no-such-run");
        for method in item.as_object().expect("methods").keys() {
            let m = method.to_uppercase();
            let public = item[method]["security"]
                .as_array()
                .is_some_and(|s| s.is_empty());
            let (status, body) = request(http, &m, &concrete, None, Some("{}"));
            if public {
                assert_eq!(status, 200, "{m} {path} is public");
                continue;
            }
            assert_eq!(status, 401, "{m} {path} without a token");
            let err: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error");
            assert!(err["error"].is_string(), "{m} {path}: {err}");
            let (status, _) = request(http, &m, &concrete, Some("Bearer-nonsense"), Some("{}"));
            assert_eq!(status, 401, "{m} {path} with a bad token");
            let admin_only = item[method]["responses"].get("403").is_some()
                && m == "POST"
                && path != "/api/query";
            if admin_only {
                let (status, body) = request(http, &m, &concrete, Some(READ_TOKEN), Some("{}"));
                assert_eq!(status, 403, "{m} {path} with a read token");
                let err: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error");
                assert!(
                    err["error"].as_str().is_some_and(|e| e.contains("admin")),
                    "{err}"
                );
            }
        }
    }

    // Read routes answer with the documented shapes.
    let me = get_json(http, "/api/me", READ_TOKEN);
    assert_eq!(
        (me["name"].as_str(), me["scope"].as_str()),
        (Some("dashboard"), Some("read"))
    );
    let overview = get_json(http, "/api/overview", READ_TOKEN);
    assert_eq!(overview["project"], "shop");
    assert_eq!(overview["recent_runs"].as_array().map(|r| r.len()), Some(1));
    let lineage = get_json(http, "/api/lineage", READ_TOKEN);
    let nodes = lineage["nodes"].as_array().expect("nodes");
    assert!(
        nodes
            .iter()
            .any(|n| n["name"] == "gold.daily_revenue" && n["status"] == "success")
    );
    assert!(
        lineage["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .any(|e| e["from"] == "gold.fct_orders" && e["to"] == "gold.daily_revenue")
    );
    let model = get_json(http, "/api/models/gold.daily_revenue", READ_TOKEN);
    assert!(
        model["sql"]
            .as_str()
            .is_some_and(|s| s.contains("gold.fct_orders")),
        "{model}"
    );
    assert_eq!(
        model["history"].as_array().map(|h| h.len()),
        Some(1),
        "{model}"
    );
    assert!(
        model["versions"].as_array().is_some_and(|v| !v.is_empty()),
        "{model}"
    );
    assert_eq!(get(http, "/api/models/gold.nope", Some(READ_TOKEN)).0, 404);
    let page = get_json(
        http,
        "/api/tables/gold.daily_revenue/rows?limit=2&offset=1",
        READ_TOKEN,
    );
    assert_eq!(page["rows"].as_array().map(|r| r.len()), Some(2));
    let total = shop.count("select count(*) from gold.daily_revenue");
    assert_eq!(page["total"].as_i64(), Some(total));
    // Layers limit data: a read token does not read bronze rows.
    assert_eq!(
        get(http, "/api/tables/bronze.orders/rows", Some(READ_TOKEN)).0,
        403
    );
    assert_eq!(
        get(http, "/api/tables/bronze.orders/rows", Some(ADMIN_TOKEN)).0,
        200
    );
    let slice = get_json(
        http,
        "/api/tables/silver.orders/slice?by=status&metric=sum(quantity)",
        READ_TOKEN,
    );
    assert!(
        slice["rows"].as_array().is_some_and(|r| !r.is_empty()),
        "{slice}"
    );

    // Queries: JSON, CSV, Arrow IPC and Parquet (the last two read back by pyarrow).
    let q = |format: &str| {
        request(
            http,
            "POST",
            "/api/query",
            Some(READ_TOKEN),
            Some(&format!(
                r#"{{"sql": "select order_date, revenue from gold.daily_revenue order by order_date", "format": "{format}"}}"#
            )),
        )
    };
    let (status, body) = q("json");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let j: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(j["rows"].as_array().map(|r| r.len() as i64), Some(total));
    let (status, body) = q("csv");
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8_lossy(&body).lines().count() as i64,
        total + 1
    );
    for (format, reader) in [
        (
            "arrow",
            "pyarrow.ipc.open_stream(open(sys.argv[1],'rb')).read_all()",
        ),
        ("parquet", "pyarrow.parquet.read_table(sys.argv[1])"),
    ] {
        let (status, body) = q(format);
        assert_eq!(status, 200, "{format}");
        let file = shop.0.join(format!("result.{format}"));
        std::fs::write(&file, body).expect("write");
        let out = Command::new("python3")
            .args([
                "-c",
                &format!(
                    "import sys, pyarrow, pyarrow.ipc, pyarrow.parquet; print({reader}.num_rows)"
                ),
            ])
            .arg(&file)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            total.to_string(),
            "{format}"
        );
    }
    let (status, body) = request(
        http,
        "POST",
        "/api/query",
        Some(READ_TOKEN),
        Some(r#"{"sql": "drop table gold.daily_revenue"}"#),
    );
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    let (status, _) = request(
        http,
        "POST",
        "/api/query",
        Some(READ_TOKEN),
        Some(r#"{"sql": "select * from bronze.orders"}"#),
    );
    assert_eq!(status, 400);
    let (status, _) = request(
        http,
        "POST",
        "/api/query",
        Some(READ_TOKEN),
        Some("not json"),
    );
    assert_eq!(status, 400);

    // An admin starts a run; it finishes.
    let (status, body) = request(
        http,
        "POST",
        "/api/runs",
        Some(ADMIN_TOKEN),
        Some(r#"{"select": "+gold.daily_revenue"}"#),
    );
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let started: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let id = started["run_id"].as_str().expect("run id").to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let run = get_json(http, &format!("/api/runs/{id}"), READ_TOKEN);
        if run["status"] != "running" {
            assert_eq!(run["status"], "success", "{run}");
            assert_eq!(run["trigger"], "api");
            assert!(run["tasks"].as_array().is_some_and(|t| !t.is_empty()));
            break;
        }
        assert!(Instant::now() < deadline, "the API run did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, _) = request(
        http,
        "POST",
        "/api/runs",
        Some(ADMIN_TOKEN),
        Some(r#"{"select": "gold.nope"}"#),
    );
    assert_eq!(status, 400);
    // The shop has no partitioned model: a backfill says so.
    let (status, body) = request(
        http,
        "POST",
        "/api/backfills",
        Some(ADMIN_TOKEN),
        Some(r#"{"start": "2024-01-01", "end": "2024-01-03"}"#),
    );
    assert_eq!(status, 400);
    assert!(
        String::from_utf8_lossy(&body).contains("no partitioned model"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, _) = request(
        http,
        "POST",
        "/api/backfills",
        Some(ADMIN_TOKEN),
        Some(r#"{"start": "2024-01-01"}"#),
    );
    assert_eq!(status, 400, "a backfill without an end");
    let (status, _) = request(
        http,
        "POST",
        &format!("/api/runs/{id}/resume"),
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(status, 400, "a successful run has nothing to resume");

    // The dashboard, in headless Chromium: every page, a click through the
    // lineage graph, a run triggered and seen to finish; screenshots kept.
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard/dashboard.mjs");
    let out = Command::new("node")
        .arg(&driver)
        .arg(format!("http://127.0.0.1:{http}"))
        .arg(ADMIN_TOKEN)
        .arg(&shots)
        .output()
        .expect("node (scripts/test.sh installs playwright-core and chromium)");
    assert!(
        out.status.success(),
        "dashboard test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A read token: the same pages, and no buttons to start or resume runs.
    let out = Command::new("node")
        .arg(&driver)
        .arg(format!("http://127.0.0.1:{http}"))
        .arg(READ_TOKEN)
        .arg(shots.join("read"))
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "dashboard test (read token) failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "overview", "lineage", "model", "runs", "run", "products", "explorer",
    ] {
        let png = shots.join(format!("{page}.png"));
        let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{} is missing or empty", png.display());
    }
}

#[test]
fn tls_is_required_when_configured_and_serve_refuses_files_that_do_not_load() {
    // Files that do not load: serve stops with the reason; nothing listens.
    for (cert, key, why) in [
        ("certs/none.pem", "certs/none.key", "does not load"),
        ("strata.toml", "strata.toml", "does not load"),
    ] {
        let (_p, shop, _http, sql) = shop_with(
            &format!("tls_cert = \"{cert}\"\ntls_key = \"{key}\""),
            false,
        );
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["serve", "--project"])
            .arg(&shop.0)
            .envs(env())
            .output()
            .expect("serve");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "serve started with {cert}: {err}");
        assert!(err.contains(why) && err.contains("TLS"), "{cert}: {err}");
        assert!(std::net::TcpStream::connect(("127.0.0.1", sql)).is_err());
    }

    // A real certificate: TLS clients connect; plaintext ones are refused.
    let (_p, shop, http, sql) = shop_with(
        "tls_cert = \"certs/server.pem\"\ntls_key = \"certs/server.key\"",
        false,
    );
    std::fs::create_dir_all(shop.0.join("certs")).expect("mkdir");
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(shop.0.join("certs/server.key"))
        .arg("-out")
        .arg(shop.0.join("certs/server.pem"))
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _server = serve(&shop, http, Some(sql));
    let run = |mode: &str| {
        Command::new("psql")
            .args(["-X", "-A", "-t", "-h", "127.0.0.1", "-p", &sql.to_string()])
            .args(["-U", "analyst", "-d", "shop", "-c", "select 40 + 2"])
            .env("PGPASSWORD", ANALYST_PASSWORD)
            .env("PGSSLMODE", mode)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("psql")
    };
    let tls = run("require");
    assert!(
        tls.status.success(),
        "{}",
        String::from_utf8_lossy(&tls.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&tls.stdout).trim(), "42");
    let plain = run("disable");
    assert!(!plain.status.success());
    let err = String::from_utf8_lossy(&plain.stderr);
    assert!(err.contains("requires TLS"), "{err}");
}

#[test]
fn an_admin_backfills_through_the_api() {
    let p = TestProject::new();
    let http = free_port();
    p.write(
        "strata.toml",
        &format!(
            "[project]\nname = \"parts\"\n[sources.ev]\nformat = \"csv\"\npath = \"data/*.csv\"\ncolumns = {{ id = \"bigint\", at = \"timestamp\" }}\n[serve]\nhttp = \"127.0.0.1:{http}\"\n[serve.tokens.ops]\ntoken = \"${{ADMIN_TOKEN}}\"\nscope = \"admin\"\n"
        ),
    );
    p.write(
        "models/silver/events.sql",
        "/*\nmaterialized = \"incremental\"\nstrategy = \"replace_range\"\npartition_by = \"day\"\ngrain = \"day\"\n*/\nselect id, cast(at as date) as day from bronze.ev\nwhere at >= :start and at < :end\n",
    );
    let mut csv = String::from("id,at\n");
    for d in 1..=5 {
        csv.push_str(&format!("{d},2024-01-{d:02}T10:00:00\n"));
    }
    p.write("data/ev.csv", &csv);
    let _server = serve(&Shop(p.path().to_path_buf()), http, None);
    let (status, body) = request(
        http,
        "POST",
        "/api/backfills",
        Some(ADMIN_TOKEN),
        Some(
            r#"{"start": "2024-01-01", "end": "2024-01-06", "select": "+silver.events", "parallel": 2}"#,
        ),
    );
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let id = serde_json::from_slice::<serde_json::Value>(&body).expect("json")["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    let run = loop {
        let run = get_json(http, &format!("/api/runs/{id}"), ADMIN_TOKEN);
        if run["status"] != "running" {
            break run;
        }
        assert!(Instant::now() < deadline, "the backfill did not finish");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(run["trigger"], "backfill");
    assert_eq!(
        p.sql("select count(distinct day) as n from silver.events"),
        vec!["n", "5"]
    );
    // Again: nothing is left to do.
    let (status, body) = request(
        http,
        "POST",
        "/api/backfills",
        Some(ADMIN_TOKEN),
        Some(r#"{"start": "2024-01-01", "end": "2024-01-06", "select": "+silver.events"}"#),
    );
    assert_eq!(status, 400);
    assert!(
        String::from_utf8_lossy(&body).contains("nothing to backfill"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

#[test]
fn an_admin_compacts_and_vacuums_a_table_through_the_api() {
    let (_p, shop, http, _sql) = shop();
    shop.ok(&["example", "next-day"]);
    shop.ok(&["run"]);
    let rows = shop.count("select count(*) from bronze.orders");
    let _server = serve(&shop, http, None);
    let post = |path: &str, body: &str| {
        let (status, bytes) = request(http, "POST", path, Some(ADMIN_TOKEN), Some(body));
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&bytes)));
        (status, v)
    };

    // Two days of appends: two files, compacted into one; no row changes.
    let (status, c) = post("/api/tables/bronze.orders/optimize", "{}");
    assert_eq!(status, 200, "{c}");
    assert_eq!(
        (&c["table"], &c["files_removed"], &c["files_added"]),
        (
            &serde_json::json!("bronze.orders"),
            &serde_json::json!(2),
            &serde_json::json!(1)
        ),
        "{c}"
    );
    assert_eq!(shop.count("select count(*) from bronze.orders"), rows);

    // The replaced files, listed by a dry run; a short retention needs consent.
    let (status, v) = post(
        "/api/tables/bronze.orders/vacuum",
        r#"{"retain_hours": 0, "unsafe_retention": true, "dry_run": true}"#,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["files"].as_array().map(|f| f.len()), Some(2), "{v}");
    let (status, v) = post("/api/tables/bronze.orders/vacuum", r#"{"retain_hours": 1}"#);
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("--unsafe-retention") || e.contains("shorter")),
        "{v}"
    );

    // Bad input is named.
    let (status, v) = post(
        "/api/tables/bronze.orders/optimize",
        r#"{"target_size": "lots"}"#,
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("lots")),
        "{v}"
    );
    let (status, v) = post("/api/tables/gold.nope/optimize", "{}");
    assert_eq!(status, 404, "{v}");
    let (status, v) = post("/api/tables/bronze.orders/vacuum", r#"{"days": 3}"#);
    assert_eq!(status, 400, "{v}");
}
