//! Database sources against the machine's real PostgreSQL and MariaDB:
//! snapshot and cursor modes, types, quarantined values, and a crash between
//! the bronze commit and the state store's record.

use sqlx::Connection;

use crate::support::TestProject;

pub(crate) const PG: &str = "postgres://postgres@127.0.0.1:5432/test";
const MY: &str = "mysql://root@127.0.0.1:3306/test";

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

pub(crate) fn pg(sql: &str) {
    block(async {
        let mut c = sqlx::PgConnection::connect(PG)
            .await
            .expect("PostgreSQL must be running (see CONTRIBUTING.md)");
        sqlx::raw_sql(sql).execute(&mut c).await.expect(sql);
    });
}

fn my(sql: &str) {
    block(async {
        let mut c = sqlx::MySqlConnection::connect(MY)
            .await
            .expect("MariaDB must be running (see CONTRIBUTING.md)");
        sqlx::raw_sql(sql).execute(&mut c).await.expect(sql);
    });
}

pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid_like())
}

fn uuid_like() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", t, std::process::id())
}

#[test]
fn postgres_cursor_reads_only_rows_past_the_watermark() {
    let schema = unique("strata_it");
    pg(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.events (id bigint primary key, amount numeric(10,2), note text, day date, flag boolean, updated_at timestamptz not null);
         INSERT INTO {schema}.events VALUES
           (1, 10.50, 'a', '2024-01-01', true, '2024-01-01 10:00:00+00'),
           (2, 20.25, 'b', '2024-01-02', false, '2024-01-02 10:00:00+00'),
           (3, NULL, NULL, NULL, NULL, '2024-01-03 10:00:00.123456+00');"
    ));
    let p = TestProject::new();
    p.write(
        "strata.toml",
        &format!("[project]\nname = \"db\"\n[sources.events]\nformat = \"postgres\"\nurl = \"{PG}\"\ntable = \"{schema}.events\"\nmode = \"cursor\"\ncursor = \"updated_at\"\n"),
    );
    p.write(
        "models/silver/events.sql",
        "select id, amount, note, day, flag, updated_at from bronze.events",
    );
    p.ok(&["validate"]);
    p.ok(&["run"]);
    assert_eq!(
        p.sql("select id, cast(amount as varchar) as amount, cast(day as varchar) as day, flag from silver.events order by id"),
        vec!["id,amount,day,flag", "1,10.50,2024-01-01,true", "2,20.25,2024-01-02,false", "3,,,"]
    );
    let t = &p.tasks()["bronze.events"];
    assert_eq!(t["rows_written"], 3);
    assert!(
        t["message"]
            .as_str()
            .unwrap_or("")
            .contains("read up to updated_at = 2024-01-03 10:00:00.123456+00:00"),
        "{t}"
    );
    // The password-free URL and table name are the rows' `_source`.
    assert_eq!(
        p.sql("select distinct _source from bronze.events"),
        vec!["_source".to_string(), format!("{PG} table {schema}.events")]
    );

    // New and updated rows only.
    pg(&format!(
        "INSERT INTO {schema}.events VALUES (4, 1.00, 'd', '2024-01-04', true, '2024-01-04 10:00:00+00');
         UPDATE {schema}.events SET note = 'a2', updated_at = '2024-01-05 00:00:00+00' WHERE id = 1;"
    ));
    p.ok(&["run"]);
    assert_eq!(p.tasks()["bronze.events"]["rows_written"], 2);
    assert_eq!(p.count("select count(*) from bronze.events"), 5);
    p.ok(&["run"]);
    let t = &p.tasks()["bronze.events"];
    assert_eq!(t["status"], "skipped");
    assert!(
        t["message"].as_str().unwrap_or("").contains("no rows past"),
        "{t}"
    );

    // A crash after the bronze commit but before the state store heard of it:
    // the watermark travels in the commit, so nothing is read twice.
    pg(&format!(
        "INSERT INTO {schema}.events VALUES (5, 2.00, 'e', '2024-01-06', true, '2024-01-06 10:00:00+00');"
    ));
    p.ok(&["run"]);
    let db = p.path().join(".strata/state.db");
    block(async {
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("state");
        sqlx::raw_sql("DELETE FROM watermarks; DELETE FROM ingested_files;")
            .execute(&mut c)
            .await
            .expect("forget");
    });
    p.ok(&["run"]);
    assert_eq!(
        p.count("select count(*) from bronze.events"),
        6,
        "each row once"
    );
    pg(&format!("DROP SCHEMA {schema} CASCADE"));
}

#[test]
fn values_that_do_not_fit_declared_columns_are_quarantined_with_the_row() {
    let schema = unique("strata_it");
    pg(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.t (id int, code text);
         INSERT INTO {schema}.t VALUES (1, '10'), (2, 'x7'), (3, '30');"
    ));
    let p = TestProject::new();
    p.write(
        "strata.toml",
        &format!("[project]\nname = \"db\"\n[sources.codes]\nformat = \"postgres\"\nurl = \"{PG}\"\nquery = \"select id, code from {schema}.t\"\ncolumns = {{ id = \"bigint\", code = \"bigint\" }}\n"),
    );
    p.ok(&["run"]);
    assert_eq!(
        p.sql("select id, code from bronze.codes order by id"),
        vec!["id,code", "1,10", "3,30"]
    );
    let q = p.sql("select _error, _line, _raw from bronze.codes_quarantine");
    assert_eq!(q.len(), 2, "{q:?}");
    assert!(
        q[1].contains("`x7` is not a valid bigint") && q[1].contains(",2,"),
        "{q:?}"
    );
    let t = &p.tasks()["bronze.codes"];
    assert_eq!(
        (t["rows_read"].as_i64(), t["rows_quarantined"].as_i64()),
        (Some(3), Some(1))
    );
    pg(&format!("DROP SCHEMA {schema} CASCADE"));
}

#[test]
fn mysql_snapshot_appends_the_whole_table_each_run() {
    let table = unique("strata_it");
    my(&format!(
        "CREATE TABLE {table} (id BIGINT UNSIGNED PRIMARY KEY, price DECIMAL(8,3), name VARCHAR(20), at DATETIME(6), active BOOLEAN);
         INSERT INTO {table} VALUES (1, 1.125, 'x', '2024-01-01 08:00:00.5', 1), (2, NULL, 'y', NULL, 0);"
    ));
    let p = TestProject::new();
    p.write(
        "strata.toml",
        &format!("[project]\nname = \"db\"\n[sources.items]\nformat = \"mysql\"\nurl = \"{MY}\"\ntable = \"{table}\"\n"),
    );
    p.ok(&["run"]);
    assert_eq!(
        p.sql("select id, cast(price as varchar) as price, name, cast(at as varchar) as at, active from bronze.items order by id"),
        vec![
            "id,price,name,at,active",
            "1,1.125,x,2024-01-01T08:00:00.500Z,true",
            "2,,y,,false"
        ]
    );
    p.ok(&["run"]);
    assert_eq!(
        p.count("select count(distinct _batch_id) from bronze.items"),
        2
    );
    assert_eq!(p.count("select count(*) from bronze.items"), 4);
    my(&format!("DROP TABLE {table}"));
}

#[test]
fn bad_database_sources_are_located() {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        "[project]\nname = \"db\"\n[sources.a]\nformat = \"postgres\"\nurl = \"postgres://x@127.0.0.1/db\"\n\n[sources.b]\nformat = \"mysql\"\nurl = \"mysql://x@127.0.0.1/db\"\ntable = \"t\"\nmode = \"cursor\"\n\n[sources.c]\nformat = \"postgres\"\nurl = \"${NO_SUCH_VAR_FOR_STRATA}\"\ntable = \"t\"\n",
    );
    let out = p.strata(&["validate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("strata.toml:4:10: source `a` has neither `table` nor `query`"),
        "{err}"
    );
    assert!(
        err.contains("strata.toml:8:10: source `b` is in cursor mode but has no `cursor`"),
        "{err}"
    );
    assert!(
        err.contains("strata.toml:15:7: environment variable `NO_SUCH_VAR_FOR_STRATA` is not set"),
        "{err}"
    );
}
