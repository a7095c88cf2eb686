//! OpenLineage: every task sends START and COMPLETE (or FAIL) run events to a
//! local receiver, which validates each one against the OpenLineage spec of
//! the pinned openlineage-python (tests/openlineage/receiver.py).

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use crate::support::TestProject;

/// The receiver, killed when dropped.
struct Receiver {
    child: Child,
    port: u16,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn receiver(events: &std::path::Path) -> Receiver {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openlineage/receiver.py");
    let mut child = Command::new("python3")
        .arg(script)
        .env("OL_EVENTS", events)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the OpenLineage receiver");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read port");
    let port = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("receiver said {line:?}"));
    Receiver { child, port }
}

#[test]
fn tasks_send_valid_run_events_with_schema_lineage_and_statistics() {
    let p = TestProject::new();
    let events = p.path().join("events.jsonl");
    let r = receiver(&events);
    p.write(
        "strata.toml",
        &format!(
            "[project]\nname = \"ol\"\n[sources.orders]\nformat = \"csv\"\npath = \"data/*.csv\"\ncolumns = {{ id = \"bigint\", amount = \"double\" }}\n\n[openlineage]\nurl = \"http://127.0.0.1:{}/api/v1/lineage\"\nnamespace = \"shop\"\n",
            r.port
        ),
    );
    p.write("data/a.csv", "id,amount\n1,10\n2,5\n");
    p.write(
        "models/silver/orders.sql",
        "select id, amount * 2 as doubled from bronze.orders",
    );
    p.write(
        "models/gold/bad.sql",
        "/*\n[[checks]]\nrow_count = { min = 100 }\n*/\nselect count(*) as n from silver.orders",
    );
    let out = p.strata(&["run"]);
    assert_eq!(out.status.code(), Some(1), "gold.bad fails its check");
    let lines = std::fs::read_to_string(&events).expect("events");
    let records: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    for r in &records {
        assert_eq!(r["valid"], true, "invalid event: {}", r["errors"]);
    }
    let of = |table: &str| -> Vec<&serde_json::Value> {
        records
            .iter()
            .map(|r| &r["event"])
            .filter(|e| e["job"]["name"] == table)
            .collect()
    };
    let kinds = |table: &str| -> Vec<String> {
        of(table)
            .iter()
            .map(|e| e["eventType"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(kinds("bronze.orders"), vec!["START", "COMPLETE"]);
    assert_eq!(kinds("silver.orders"), vec!["START", "COMPLETE"]);
    assert_eq!(kinds("gold.bad"), vec!["START", "FAIL"]);
    let silver = of("silver.orders");
    assert_eq!(silver[0]["run"]["runId"], silver[1]["run"]["runId"]);
    assert_eq!(silver[1]["job"]["namespace"], "shop");
    assert_eq!(silver[1]["inputs"][0]["name"], "bronze.orders");
    let output = &silver[1]["outputs"][0];
    assert_eq!(output["name"], "silver.orders");
    assert_eq!(output["facets"]["schema"]["fields"][1]["name"], "doubled");
    let doubled = &output["facets"]["columnLineage"]["fields"]["doubled"]["inputFields"][0];
    assert_eq!(doubled["name"], "bronze.orders");
    assert_eq!(doubled["field"], "amount");
    assert_eq!(doubled["transformations"][0]["subtype"], "TRANSFORMATION");
    let id = &output["facets"]["columnLineage"]["fields"]["id"]["inputFields"][0];
    assert_eq!(id["transformations"][0]["subtype"], "IDENTITY");
    assert_eq!(
        output["outputFacets"]["outputStatistics"]["rowCount"], 2,
        "{output}"
    );
    let fail = of("gold.bad");
    let msg = fail[1]["run"]["facets"]["errorMessage"]["message"]
        .as_str()
        .expect("error message");
    assert!(msg.contains("row_count"), "{msg}");
    assert!(
        fail[1]["outputs"][0]["facets"].is_null(),
        "nothing was published"
    );
}
