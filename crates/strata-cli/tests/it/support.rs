//! Running the `strata` binary on a project folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A project folder that commands run against.
pub struct Shop(pub PathBuf);

impl Shop {
    /// Runs `strata ARGS --project DIR`.
    pub fn strata(&self, args: &[&str]) -> Output {
        strata_in(&self.0, args)
    }

    /// Runs and asserts exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_env(args, &[])
    }

    /// As [`Shop::ok`], with extra environment variables.
    pub fn ok_env(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(args)
            .arg("--project")
            .arg(&self.0)
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .output()
            .expect("run strata");
        assert!(
            out.status.success(),
            "strata {args:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A query's rows as CSV lines (header first).
    pub fn sql(&self, query: &str) -> Vec<String> {
        self.ok(&["sql", "--format", "csv", query])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// A single number from a query.
    pub fn count(&self, query: &str) -> i64 {
        let rows = self.sql(query);
        rows.get(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no number from {query}: {rows:?}"))
    }

    /// The tasks of the latest run, as JSON objects by table name.
    pub fn tasks(&self) -> BTreeMap<String, serde_json::Value> {
        let runs = self.ok(&["runs", "--format", "json", "--limit", "1"]);
        let run: serde_json::Value =
            serde_json::from_str(runs.lines().next().expect("a run")).expect("json");
        let id = run["run_id"].as_str().expect("run id").to_string();
        self.ok(&["runs", &id, "--format", "json"])
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
            .map(|v| (v["task"].as_str().expect("task").to_string(), v))
            .collect()
    }
}

/// A temporary project folder, removed at the end of the test.
pub struct TestProject {
    _dir: tempfile::TempDir,
    shop: Shop,
}

impl std::ops::Deref for TestProject {
    type Target = Shop;
    fn deref(&self) -> &Shop {
        &self.shop
    }
}

impl TestProject {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let shop = Shop(dir.path().to_path_buf());
        Self { _dir: dir, shop }
    }

    pub fn path(&self) -> &Path {
        &self.shop.0
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
    }
}

/// The example shop (`strata init --example shop`), created under `p`.
pub fn example_shop(p: &TestProject) -> Shop {
    example_shop_named(p, "shop")
}

/// The example shop, created in folder `name` under `p`.
pub fn example_shop_named(p: &TestProject, name: &str) -> Shop {
    let dir = p.path().join(name);
    let out = strata_in(
        p.path(),
        &["init", dir.to_str().expect("utf8"), "--example", "shop"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Shop(dir)
}

pub fn strata_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .arg("--project")
        .arg(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run strata")
}

/// The folder of data-driven cases.
pub fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases")
}
