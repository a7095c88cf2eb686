//! Monitoring and alerting end to end: a real HTTP receiver for webhooks and
//! a real SMTP server (aiosmtpd, from PyPI) started by the test, `promtool
//! check metrics` on a scrape of `strata serve`, structured run logs, costs,
//! and the example project's late source and tenfold day.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};

use crate::support::TestProject;

/// Webhook posts received, as (path, JSON body).
type Posts = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// A webhook receiver on 127.0.0.1: answers 200, or 500 on `/fail`.
fn receiver() -> (String, Posts) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let posts: Posts = Arc::default();
    let seen = posts.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            let status = if path == "/fail" {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            if let Ok(v) = serde_json::from_slice(&body) {
                seen.lock().expect("posts").push((path, v));
            }
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
            );
        }
    });
    (base, posts)
}

/// An SMTP server (aiosmtpd) delivering into a maildir; killed on drop.
struct Smtp {
    child: Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl Smtp {
    fn start() -> Smtp {
        let port = free_port();
        let maildir = tempfile::tempdir().expect("maildir");
        let mut child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("box"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start aiosmtpd (scripts/test.sh installs it: pip install aiosmtpd)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Smtp {
                    child,
                    port,
                    maildir,
                };
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("aiosmtpd did not start on port {port} (is it installed? pip install aiosmtpd)");
    }

    /// The messages delivered so far.
    fn messages(&self) -> Vec<String> {
        let dir = self.maildir.path().join("box/new");
        let mut out: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn at(d: Duration) -> String {
    (Utc::now() + d).to_rfc3339()
}

fn project(webhook: &str, smtp_port: u16) -> TestProject {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        &format!(
            r#"[project]
name = "mon"

[sources.events]
format = "csv"
path = "data/*.csv"
freshness = "1h"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
from = "strata@example.com"

[alerts.slack]
on = ["sla_missed"]
webhook = "{webhook}/slack"
repeat_after = "4h"

[alerts.generic]
on = ["sla_missed"]
webhook = "${{ALERT_HOOK}}/json"
format = "json"
email = ["oncall@example.com"]
repeat_after = "4h"
"#
        ),
    );
    p.write("data/1.csv", "id,v\n1,a\n2,b\n");
    p.write(
        "models/silver/events.sql",
        "/*\nfreshness = \"1h\"\n*/\nselect id, v from bronze.events",
    );
    p
}

#[test]
fn an_incident_alerts_once_repeats_resolves_once_and_can_be_silenced() {
    let (hook, posts) = receiver();
    let smtp = Smtp::start();
    let p = project(&hook, smtp.port);
    let env = [("ALERT_HOOK", hook.as_str())];
    p.ok_env(&["run"], &env);
    let count = |path: &str| {
        posts
            .lock()
            .expect("posts")
            .iter()
            .filter(|(p, _)| p == path)
            .count()
    };

    // Fresh: nothing to say.
    p.ok_env(
        &["alerts", "check", "--at", &at(Duration::minutes(30))],
        &env,
    );
    assert_eq!(count("/slack"), 0);

    // Stale: one alert per rule, and one e-mail.
    let out = p.ok_env(&["alerts", "check", "--at", &at(Duration::hours(2))], &env);
    assert!(out.contains("alert slack [firing] sla_missed"), "{out}");
    assert_eq!((count("/slack"), count("/json")), (1, 1));
    assert_eq!(smtp.messages().len(), 1);
    {
        let posts = posts.lock().expect("posts");
        // Slack's incoming-webhook shape: text plus Block Kit blocks.
        let slack = &posts.iter().find(|(p, _)| p == "/slack").expect("slack").1;
        assert!(slack["text"].as_str().expect("text").contains("FIRING"));
        let kinds: Vec<&str> = slack["blocks"]
            .as_array()
            .expect("blocks")
            .iter()
            .map(|b| b["type"].as_str().expect("type"))
            .collect();
        assert_eq!(kinds, ["header", "section", "context"]);
        assert_eq!(slack["blocks"][0]["text"]["type"], "plain_text");
        assert_eq!(slack["blocks"][1]["text"]["type"], "mrkdwn");
        assert!(
            slack["blocks"][1]["fields"]
                .as_array()
                .expect("fields")
                .len()
                >= 2
        );
        // The generic body carries every field.
        let json = &posts.iter().find(|(p, _)| p == "/json").expect("json").1;
        for k in [
            "project",
            "rule",
            "incident_id",
            "status",
            "repeat",
            "kind",
            "subject",
            "severity",
            "summary",
            "tables",
            "details",
            "opened_at",
            "sent_at",
        ] {
            assert!(json.get(k).is_some(), "generic body lacks {k}: {json}");
        }
        assert_eq!(json["kind"], "sla_missed");
        assert_eq!(json["subject"], "bronze.events");
        assert_eq!(json["details"]["also_stale"][0], "silver.events");
    }
    let mail = &smtp.messages()[0];
    assert!(mail.contains("To: oncall@example.com"), "{mail}");
    assert!(mail.contains("[FIRING] mon"), "{mail}");

    // Still stale, before repeat_after: nothing (`strata serve` evaluates the
    // same way on its own clock).
    p.ok_env(&["serve", "--once-at", &at(Duration::hours(3))], &env);
    assert_eq!(count("/slack"), 1);
    // After repeat_after: one reminder.
    p.ok_env(
        &[
            "alerts",
            "check",
            "--at",
            &at(Duration::minutes(6 * 60 + 5)),
        ],
        &env,
    );
    assert_eq!(count("/slack"), 2);
    let last_json = |posts: &Posts| {
        posts
            .lock()
            .expect("posts")
            .iter()
            .rev()
            .find(|(p, _)| p == "/json")
            .map(|(_, v)| v.clone())
            .expect("a json post")
    };
    assert_eq!(last_json(&posts)["repeat"], true);

    // New data arrives: resolved, exactly once.
    p.write("data/2.csv", "id,v\n3,c\n");
    let out = p.ok_env(&["run"], &env);
    assert!(out.contains("alert slack [resolved] sla_missed"), "{out}");
    assert_eq!(count("/slack"), 3);
    assert_eq!(last_json(&posts)["status"], "resolved");
    p.ok_env(
        &["alerts", "check", "--at", &at(Duration::minutes(30))],
        &env,
    );
    assert_eq!(count("/slack"), 3, "resolved only once");
    assert_eq!(smtp.messages().len(), 3, "firing, repeat, resolved");

    // Silenced for 2h: a new incident is recorded but not sent until the silence ends.
    let out = p.ok(&["alerts", "silence", "slack", "--for", "2h"]);
    assert!(out.contains("silenced alert `slack` until"), "{out}");
    let out = p.ok_env(
        &["alerts", "check", "--at", &at(Duration::minutes(90))],
        &env,
    );
    assert!(out.contains("alert slack [firing] sla_missed"), "{out}");
    assert!(out.contains("(silenced)"), "{out}");
    assert_eq!(count("/slack"), 3, "silenced");
    assert_eq!(count("/json"), 4, "the other rule is not silenced");
    p.ok_env(
        &["alerts", "check", "--at", &at(Duration::minutes(150))],
        &env,
    );
    assert_eq!(count("/slack"), 4, "sent once the silence is over");

    let out = p.ok(&["alerts"]);
    assert!(out.contains("firing"), "{out}");
    assert!(out.contains("resolved"), "{out}");
    let bad = p.strata(&["alerts", "silence", "slak", "--for", "2h"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("did you mean `slack`?"));
}

#[test]
fn a_failing_channel_is_reported_and_retried() {
    let (hook, posts) = receiver();
    let p = TestProject::new();
    p.write(
        "strata.toml",
        &format!(
            "[project]\nname = \"x\"\n[sources.e]\nformat = \"csv\"\npath = \"data/*.csv\"\nfreshness = \"1h\"\n[alerts.down]\non = [\"sla_missed\"]\nwebhook = \"{hook}/fail\"\n"
        ),
    );
    p.write("data/1.csv", "id\n1\n");
    p.ok(&["run"]);
    let out = p.strata(&["alerts", "check", "--at", &at(Duration::hours(2))]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("NOT SENT"), "{stdout}");
    assert!(stdout.contains("answered 500"), "{stdout}");
    // Not delivered, so tried again next time (it is not yet "sent").
    let _ = p.strata(&[
        "alerts",
        "check",
        "--at",
        &at(Duration::hours(2) + Duration::minutes(1)),
    ]);
    assert_eq!(posts.lock().expect("posts").len(), 2);
}

#[test]
fn metrics_scrape_passes_promtool_and_logs_and_costs_are_kept() {
    let p = TestProject::new();
    let port = free_port();
    p.write(
        "strata.toml",
        &format!(
            "[project]\nname = \"m\"\n[sources.e]\nformat = \"csv\"\npath = \"data/*.csv\"\nfreshness = \"6h\"\n[serve]\nhttp = \"127.0.0.1:{port}\"\n[alerts.ops]\non = [\"task_failed\"]\ncommand = \"cat >> alerts.jsonl\"\n"
        ),
    );
    p.write("data/1.csv", "id,name\n1,a\n2,\"b \"\"quoted\"\"\"\n");
    p.write(
        "models/silver/e.sql",
        "/*\n[[checks]]\nnot_null = [\"id\"]\n*/\nselect id, name from bronze.e",
    );
    p.write("models/gold/bad.sql", "select no_such_column from silver.e");

    // A run with a failing task, logged as JSON lines with run and task ids.
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--log-format", "json", "run", "--project"])
        .arg(p.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let finished: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["message"] == "task finished" || l["message"] == "task failed")
        .collect();
    assert_eq!(finished.len(), 3, "{stderr}");
    for l in &finished {
        assert!(l["run_id"].as_str().is_some_and(|r| !r.is_empty()), "{l}");
        assert!(l["task"].as_str().is_some(), "{l}");
    }
    let run_id = finished[0]["run_id"].as_str().expect("run id").to_string();
    // The run's log is kept and retrievable by its id.
    let log = p.ok(&["runs", &run_id, "--log"]);
    assert!(log.lines().count() >= 5, "{log}");
    assert!(log.contains("\"message\":\"task failed\""), "{log}");
    assert!(log.contains("\"task\":\"gold.bad\""), "{log}");
    // The failed task alerted through the command channel, once.
    let alerts = std::fs::read_to_string(p.path().join("alerts.jsonl")).expect("alerts file");
    let alert: serde_json::Value = serde_json::from_str(alerts.trim()).expect("alert json");
    assert_eq!(alert["kind"], "task_failed");
    assert_eq!(alert["subject"], "gold.bad");

    // Costs rank the models.
    let costs = p.ok(&["runs", "--costs", "--since", "1d"]);
    assert!(
        costs.contains("bronze.e") && costs.contains("silver.e"),
        "{costs}"
    );
    let json = p.ok(&["runs", "--costs", "--format", "json"]);
    let costs: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert!(costs[0]["cpu_seconds"].as_f64().is_some(), "{json}");
    // The model read its input table's data files; the ingest its CSV file.
    let of = |m: &str| costs.iter().find(|c| c["model"] == m).expect(m).clone();
    assert!(
        of("silver.e")["bytes_read"].as_i64().expect("bytes") > 0,
        "{json}"
    );
    assert!(
        of("silver.e")["bytes_written"].as_i64().expect("bytes") > 0,
        "{json}"
    );
    let csv = std::fs::metadata(p.path().join("data/1.csv"))
        .expect("csv")
        .len() as i64;
    assert_eq!(of("bronze.e")["bytes_read"].as_i64(), Some(csv), "{json}");

    // Scrape a running server and lint the exposition with promtool.
    let mut serve = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--project"])
        .arg(p.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut body = String::new();
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = write!(
                s,
                "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
            );
            let mut resp = String::new();
            let _ = s.read_to_string(&mut resp);
            if let Some((head, b)) = resp.split_once("\r\n\r\n")
                && head.starts_with("HTTP/1.1 200")
            {
                assert!(
                    head.to_ascii_lowercase()
                        .contains("text/plain; version=0.0.4"),
                    "{head}"
                );
                body = b.to_string();
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(!body.is_empty(), "no scrape from strata serve");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/test.sh installs Debian's prometheus package)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write");
    let lint = promtool.wait_with_output().expect("promtool");
    assert!(
        lint.status.success(),
        "promtool: {}{}\n{body}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    for want in [
        "strata_rows_written_total{model=\"bronze.e\",layer=\"bronze\"} 2",
        "strata_tasks_total{model=\"gold.bad\",layer=\"gold\",status=\"failed\"} 1",
        "strata_last_task_failed{model=\"gold.bad\",layer=\"gold\"} 1",
        "strata_table_rows{model=\"silver.e\",layer=\"silver\"} 2",
        "strata_freshness_sla_seconds{model=\"bronze.e\",layer=\"bronze\"} 21600",
        "strata_checks{model=\"silver.e\",layer=\"silver\",status=\"pass\"} 1",
        "strata_alerts_firing{rule=\"ops\"} 1",
        "strata_runs_total{status=\"failed\"} 1",
    ] {
        assert!(body.contains(want), "missing {want} in\n{body}");
    }
}

/// The example project: a late orders delivery breaches the source's
/// freshness SLA and raises one alert (its downstream product folded in); a
/// day with ten times the usual orders raises one volume anomaly.
#[test]
fn the_example_alerts_on_a_late_source_and_on_a_tenfold_day() {
    let p = TestProject::new();
    let shop = crate::support::example_shop(&p);
    let dir = shop.0.clone();
    shop.ok(&["run"]);
    let alerts = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join(".strata/alerts.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("alert json"))
            .collect()
    };
    assert!(
        alerts().is_empty(),
        "a healthy first run alerts nobody: {:?}",
        alerts()
    );

    // No orders file for 27 hours: the 26h SLA of the orders source is missed.
    shop.ok(&["alerts", "check", "--at", &at(Duration::hours(27))]);
    let a = alerts();
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["kind"], "sla_missed");
    assert_eq!(a[0]["subject"], "bronze.orders");
    assert!(
        a[0]["summary"]
            .as_str()
            .expect("summary")
            .contains("over its freshness SLA of 1d 2h"),
        "{}",
        a[0]
    );
    shop.ok(&["alerts", "check", "--at", &at(Duration::hours(28))]);
    assert_eq!(alerts().len(), 1, "one alert per incident");

    // Ordinary days (the files arrive, the incident resolves), then a tenfold day.
    for _ in 0..6 {
        shop.ok(&["example", "next-day"]);
        shop.ok(&["run"]);
    }
    let a = alerts();
    assert_eq!(
        a.iter()
            .map(|x| format!(
                "{} {}",
                x["status"].as_str().unwrap_or(""),
                x["kind"].as_str().unwrap_or("")
            ))
            .collect::<Vec<_>>(),
        ["firing sla_missed", "resolved sla_missed"],
        "{a:?}"
    );
    shop.ok(&["example", "next-day", "--orders-factor", "10"]);
    let out = shop.ok(&["run"]);
    let a = alerts();
    let anomalies: Vec<&serde_json::Value> = a.iter().filter(|x| x["kind"] == "anomaly").collect();
    assert_eq!(anomalies.len(), 1, "{out}\n{a:?}");
    assert_eq!(anomalies[0]["subject"], "bronze.orders rows");
    let downstream = anomalies[0]["details"]["downstream"]
        .as_array()
        .expect("downstream");
    assert!(
        downstream.iter().any(|d| d == "silver.orders"),
        "{downstream:?}"
    );
    let status = shop.ok(&["status"]);
    assert!(status.contains("anomalies:"), "{status}");
    assert!(status.contains("alerts firing (1)"), "{status}");
}

/// A Parquet source whose column changes type upstream: the change is
/// recorded, shown by `strata status`, and alerted once as `schema_changed`.
#[test]
fn a_retyped_parquet_column_is_a_schema_change_alerted_once() {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        "[project]\nname = \"x\"\n[sources.sales]\nformat = \"parquet\"\npath = \"data/*.parquet\"\n[alerts.schema]\non = [\"schema_changed\"]\ncommand = \"cat >> alerts.jsonl && echo >> alerts.jsonl\"\n",
    );
    let write = |name: &str, amount: &str| {
        let script = format!(
            "import pyarrow as pa, pyarrow.parquet as pq\npq.write_table(pa.table({{'id': pa.array([1, 2], pa.int64()), 'amount': pa.array({amount})}}), '{}')",
            p.path().join("data").join(name).display()
        );
        std::fs::create_dir_all(p.path().join("data")).expect("mkdir");
        let out = Command::new("python3")
            .args(["-c", &script])
            .output()
            .expect("python3 with pyarrow (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    write("1.parquet", "[10, 20], pa.int32()");
    p.ok(&["run"]);
    // A narrower or wider integer is not a change of kind.
    write("2.parquet", "[30, 40], pa.int64()");
    p.ok(&["run"]);
    assert!(!p.path().join("alerts.jsonl").exists());
    write("3.parquet", "[1.5, 2.5], pa.float64()");
    p.ok(&["run"]);
    p.ok(&["alerts", "check"]);
    let alerts = std::fs::read_to_string(p.path().join("alerts.jsonl")).expect("alerts");
    let alerts: Vec<serde_json::Value> = alerts
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["kind"], "schema_changed");
    assert!(
        alerts[0]["summary"]
            .as_str()
            .expect("summary")
            .contains("~amount"),
        "{}",
        alerts[0]
    );
    let status = p.ok(&["status"]);
    assert!(status.contains("~ amount retyped"), "{status}");
}
