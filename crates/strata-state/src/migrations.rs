//! Schema migrations, written in SQL that SQLite and PostgreSQL both accept
//! (TEXT timestamps in RFC 3339, BIGINT counters, text ids made by the caller).

/// Ordered migrations; each runs once, recorded in `strata_migrations`.
pub const MIGRATIONS: &[(i64, &str, &[&str])] = &[
    (
        1,
        "runs, tasks, ingest manifest, model state",
        &[
            "CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            status TEXT NOT NULL,
            selection TEXT NOT NULL,
            full_refresh BIGINT NOT NULL,
            trigger_kind TEXT NOT NULL
        )",
            "CREATE TABLE tasks (
            run_id TEXT NOT NULL,
            task TEXT NOT NULL,
            kind TEXT NOT NULL,
            status TEXT NOT NULL,
            started_at TEXT,
            ended_at TEXT,
            rows_read BIGINT NOT NULL,
            rows_written BIGINT NOT NULL,
            rows_quarantined BIGINT NOT NULL,
            delta_version BIGINT,
            message TEXT,
            error TEXT,
            PRIMARY KEY (run_id, task)
        )",
            "CREATE TABLE ingested_files (
            source TEXT NOT NULL,
            batch_id TEXT NOT NULL,
            file TEXT NOT NULL,
            size_bytes BIGINT NOT NULL,
            modified TEXT NOT NULL,
            rows_read BIGINT NOT NULL,
            rows_loaded BIGINT NOT NULL,
            rows_quarantined BIGINT NOT NULL,
            rows_dropped BIGINT NOT NULL,
            delta_version BIGINT,
            run_id TEXT NOT NULL,
            ingested_at TEXT NOT NULL,
            PRIMARY KEY (source, batch_id, file)
        )",
            "CREATE INDEX ingested_files_by_source ON ingested_files (source, file)",
            "CREATE TABLE model_state (
            model TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            upstream_versions TEXT NOT NULL,
            delta_version BIGINT,
            built_at TEXT NOT NULL,
            run_id TEXT NOT NULL
        )",
        ],
    ),
    (
        2,
        "check results",
        &[
            "CREATE TABLE check_results (
            run_id TEXT NOT NULL,
            model TEXT NOT NULL,
            check_name TEXT NOT NULL,
            kind TEXT NOT NULL,
            severity TEXT NOT NULL,
            status TEXT NOT NULL,
            failing_rows BIGINT NOT NULL,
            action TEXT,
            sample TEXT NOT NULL,
            checked_at TEXT NOT NULL,
            PRIMARY KEY (run_id, model, check_name)
        )",
            "CREATE INDEX check_results_by_model ON check_results (model, checked_at)",
        ],
    ),
    (
        3,
        "task attempts, resumed runs, run lock",
        &[
            "ALTER TABLE tasks ADD COLUMN attempts BIGINT NOT NULL DEFAULT 1",
            "ALTER TABLE runs ADD COLUMN resumed_from TEXT",
            "CREATE TABLE run_lock (
            name TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            host TEXT NOT NULL,
            pid BIGINT NOT NULL,
            acquired_at TEXT NOT NULL
        )",
        ],
    ),
    (
        4,
        "run intervals",
        &[
            "ALTER TABLE runs ADD COLUMN interval_start TEXT",
            "ALTER TABLE runs ADD COLUMN interval_end TEXT",
        ],
    ),
    (
        5,
        "data intervals, schedule ticks, check results per interval",
        &[
            "CREATE TABLE intervals (
            model TEXT NOT NULL,
            interval_start TEXT NOT NULL,
            interval_end TEXT NOT NULL,
            status TEXT NOT NULL,
            rows_written BIGINT,
            run_id TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            error TEXT,
            attempts BIGINT NOT NULL,
            PRIMARY KEY (model, interval_start)
        )",
            "CREATE TABLE schedules (
            name TEXT PRIMARY KEY,
            first_seen TEXT NOT NULL
        )",
            "CREATE TABLE schedule_ticks (
            schedule TEXT NOT NULL,
            tick TEXT NOT NULL,
            status TEXT NOT NULL,
            run_id TEXT,
            claimed_by TEXT NOT NULL,
            claimed_at TEXT NOT NULL,
            PRIMARY KEY (schedule, tick)
        )",
            "CREATE TABLE check_results_v5 (
            run_id TEXT NOT NULL,
            model TEXT NOT NULL,
            check_name TEXT NOT NULL,
            interval_start TEXT NOT NULL,
            interval_end TEXT NOT NULL,
            kind TEXT NOT NULL,
            severity TEXT NOT NULL,
            status TEXT NOT NULL,
            failing_rows BIGINT NOT NULL,
            action TEXT,
            sample TEXT NOT NULL,
            checked_at TEXT NOT NULL,
            PRIMARY KEY (run_id, model, check_name, interval_start)
        )",
            "INSERT INTO check_results_v5 (run_id, model, check_name, interval_start, interval_end, kind, severity, status, failing_rows, action, sample, checked_at)
             SELECT run_id, model, check_name, '', '', kind, severity, status, failing_rows, action, sample, checked_at FROM check_results",
            "DROP TABLE check_results",
            "ALTER TABLE check_results_v5 RENAME TO check_results",
            "CREATE INDEX check_results_by_model_v5 ON check_results (model, checked_at)",
        ],
    ),
    (
        6,
        "run lock heartbeat",
        &["ALTER TABLE run_lock ADD COLUMN heartbeat_at TEXT"],
    ),
    (
        7,
        "watermarks of cursor sources",
        &["CREATE TABLE watermarks (
            source TEXT PRIMARY KEY,
            watermark TEXT NOT NULL,
            run_id TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )"],
    ),
    (
        8,
        "schema changes of sources",
        &["CREATE TABLE schema_events (
            source TEXT NOT NULL,
            change TEXT NOT NULL,
            column_name TEXT NOT NULL,
            column_type TEXT NOT NULL,
            file TEXT NOT NULL,
            run_id TEXT NOT NULL,
            at TEXT NOT NULL
        )", "CREATE INDEX schema_events_by_source ON schema_events (source, at)"],
    ),
    (
        9,
        "data products as last deployed",
        &["CREATE TABLE products (
            name TEXT PRIMARY KEY,
            definition TEXT NOT NULL,
            run_id TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )"],
    ),
    (
        10,
        "task metrics, alert incidents, silences",
        &[
            "ALTER TABLE tasks ADD COLUMN model TEXT",
            "ALTER TABLE tasks ADD COLUMN cpu_ms BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE tasks ADD COLUMN bytes_read BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE tasks ADD COLUMN bytes_written BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE tasks ADD COLUMN rows_dropped BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE tasks ADD COLUMN table_rows BIGINT",
            "ALTER TABLE tasks ADD COLUMN data_time TEXT",
            "UPDATE tasks SET model = task WHERE model IS NULL",
            "CREATE INDEX tasks_by_model ON tasks (model, ended_at)",
            "CREATE TABLE alert_incidents (
            id TEXT PRIMARY KEY,
            rule TEXT NOT NULL,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            status TEXT NOT NULL,
            summary TEXT NOT NULL,
            details TEXT NOT NULL,
            opened_at TEXT NOT NULL,
            last_sent_at TEXT,
            sends BIGINT NOT NULL,
            resolved_at TEXT,
            last_error TEXT
        )",
            "CREATE INDEX alert_incidents_open ON alert_incidents (rule, status, subject)",
            "CREATE TABLE alert_silences (
            rule TEXT NOT NULL,
            created_at TEXT NOT NULL,
            until_at TEXT NOT NULL,
            reason TEXT,
            PRIMARY KEY (rule, created_at)
        )",
        ],
    ),
    (
        11,
        "deployments: each table's definition fingerprint and columns as last built",
        &["CREATE TABLE deployments (
            name TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            materialized TEXT NOT NULL,
            columns TEXT NOT NULL,
            run_id TEXT NOT NULL,
            deployed_at TEXT NOT NULL
        )"],
    ),
    (
        12,
        "each task's peak query memory",
        &["ALTER TABLE tasks ADD COLUMN peak_memory BIGINT NOT NULL DEFAULT 0"],
    ),
];
