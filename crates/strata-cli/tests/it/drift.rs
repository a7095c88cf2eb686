//! Schema drift per source: `add_columns` (default), `fail`, `rescue`.

use crate::support::TestProject;

#[test]
fn new_csv_columns_are_added_and_recorded() {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        "[project]\nname = \"drift\"\n[sources.ev]\nformat = \"csv\"\npath = \"data/*.csv\"\n",
    );
    p.write("data/1.csv", "id,name\n1,a\n2,b\n");
    p.ok(&["run"]);
    p.write("data/2.csv", "id,name,coupon\n3,c,SAVE10\n4,d,\n");
    p.ok(&["run"]);
    assert_eq!(
        p.sql("select id, coupon from bronze.ev order by id"),
        vec!["id,coupon", "1,", "2,", "3,SAVE10", "4,"]
    );
    // A third file without the column: its rows read null, and that is recorded too.
    p.write("data/3.csv", "id,name\n5,e\n");
    p.ok(&["run"]);
    assert_eq!(
        p.count("select count(*) from bronze.ev where coupon is null"),
        4
    );
    let status = p.ok(&["status"]);
    assert!(
        status.contains("+ coupon (string) added — in data/2.csv"),
        "{status}"
    );
    assert!(
        status.contains("- coupon missing (read as null) — in data/3.csv"),
        "{status}"
    );
}

#[test]
fn declared_ndjson_columns_grow_with_new_keys() {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        "[project]\nname = \"drift\"\n[sources.ev]\nformat = \"ndjson\"\npath = \"data/*.ndjson\"\ncolumns = { id = \"bigint\" }\n",
    );
    p.write("data/1.ndjson", "{\"id\": 1}\n");
    p.ok(&["run"]);
    p.write("data/2.ndjson", "{\"id\": 2, \"score\": 7}\n{\"id\": 3}\n");
    p.ok(&["run"]);
    assert_eq!(
        p.sql("select id, score from bronze.ev order by id"),
        vec!["id,score", "1,", "2,7", "3,"]
    );
    // The next run keeps the grown schema (declared columns first).
    p.write("data/3.ndjson", "{\"id\": 4, \"score\": 8}\n");
    p.ok(&["run"]);
    assert_eq!(p.count("select sum(score) from bronze.ev"), 15);
}

#[test]
fn fail_stops_the_batch_and_names_the_column() {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        "[project]\nname = \"drift\"\n[sources.ev]\nformat = \"ndjson\"\npath = \"data/*.ndjson\"\nschema_drift = \"fail\"\ncolumns = { id = \"bigint\" }\n",
    );
    p.write("data/1.ndjson", "{\"id\": 1}\n");
    p.ok(&["run"]);
    p.write(
        "data/2.ndjson",
        "{\"id\": 2}\n{\"id\": 3, \"surprise\": true}\n",
    );
    let out = p.strata(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "cannot ingest data/2.ndjson: line 2: new key `surprise` (schema_drift = \"fail\""
        ),
        "{err}"
    );
    assert_eq!(
        p.count("select count(*) from bronze.ev"),
        1,
        "nothing of the batch"
    );
}

#[test]
fn rescue_keeps_the_row_and_the_unexpected_values() {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        "[project]\nname = \"drift\"\n[sources.ev]\nformat = \"ndjson\"\npath = \"data/*.ndjson\"\nschema_drift = \"rescue\"\ncolumns = { id = \"bigint\", amount = \"bigint\" }\n",
    );
    p.write(
        "data/1.ndjson",
        "{\"id\": 1, \"amount\": 5}\n{\"id\": 2, \"amount\": \"five\", \"note\": \"typo\"}\n",
    );
    p.ok(&["run"]);
    assert_eq!(
        p.sql("select id, amount, _rescued from bronze.ev order by id"),
        vec![
            "id,amount,_rescued",
            "1,5,",
            "2,,\"{\"\"amount\"\":\"\"five\"\",\"\"note\"\":\"\"typo\"\"}\""
        ]
    );
    let t = &p.tasks()["bronze.ev"];
    assert_eq!(
        (t["rows_written"].as_i64(), t["rows_quarantined"].as_i64()),
        (Some(2), Some(0))
    );
}

#[test]
fn hive_partition_folders_become_columns() {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        "[project]\nname = \"hive\"\n[sources.ev]\nformat = \"csv\"\npath = \"data/ev/*/*/*.csv\"\n\n[sources.js]\nformat = \"json\"\npath = \"data/js/*/*.json\"\n",
    );
    p.write("data/ev/date=2024-01-01/region=eu/part-0.csv", "id\n1\n2\n");
    p.write("data/ev/date=2024-01-02/region=us/part-0.csv", "id\n3\n");
    p.write(
        "data/js/day=2024-01-05/a.json",
        "[{\"id\": 7}, {\"id\": 8}]",
    );
    p.ok(&["run"]);
    assert_eq!(
        p.sql("select id, cast(date as varchar) as date, region from bronze.ev order by id"),
        vec![
            "id,date,region",
            "1,2024-01-01,eu",
            "2,2024-01-01,eu",
            "3,2024-01-02,us"
        ]
    );
    assert_eq!(
        p.count("select count(*) from bronze.ev where date = date '2024-01-01'"),
        2,
        "the folder value is typed: a date"
    );
    assert_eq!(
        p.sql("select id, cast(day as varchar) as day from bronze.js order by id"),
        vec!["id,day", "7,2024-01-05", "8,2024-01-05"]
    );
}
