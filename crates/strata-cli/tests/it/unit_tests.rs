//! `strata test`: model unit tests on fixture rows, passing and failing with a row diff.

use crate::support::TestProject;

fn project(expect: &str) -> TestProject {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        "[project]\nname = \"u\"\n[sources.sales]\nformat = \"csv\"\npath = \"data/*.csv\"\ncolumns = { id = \"bigint\", region = \"string\", amount = \"decimal(10,2)\" }\n",
    );
    p.write(
        "models/gold/by_region.sql",
        "select region, sum(amount) as total, count(*) as n from bronze.sales group by region",
    );
    p.write(
        "tests/fixtures/sales.csv",
        "id,region,amount\n1,north,10.50\n2,north,1.25\n3,south,2.00\n",
    );
    p.write(
        "tests/by_region.toml",
        &format!("model = \"gold.by_region\"\n\n[[given]]\ntable = \"bronze.sales\"\ncsv = \"tests/fixtures/sales.csv\"\n\n[expect]\nrows = [\n{expect}\n]\n"),
    );
    p
}

#[test]
fn unit_tests_pass_without_touching_the_lake() {
    let p = project(
        "  { region = \"north\", total = 11.75, n = 2 },\n  { region = \"south\", total = 2.0, n = 1 },",
    );
    let out = p.ok(&["test"]);
    assert!(out.contains("by_region") && out.contains("pass"), "{out}");
    assert!(!p.path().join("lake").exists(), "the lake is not touched");
}

#[test]
fn failing_unit_tests_show_a_row_diff() {
    let p = project(
        "  { region = \"north\", total = 11.75, n = 2 },\n  { region = \"south\", total = 3.0, n = 1 },",
    );
    let out = p.strata(&["test"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL"), "{text}");
    assert!(text.contains("- south | 3.00 | 1"), "{text}");
    assert!(text.contains("+ south | 2.00 | 1"), "{text}");
    assert!(
        !text.contains("north | 11.75"),
        "matching rows are not in the diff: {text}"
    );
}

#[test]
fn example_unit_test_passes() {
    let p = TestProject::new();
    let dir = crate::support::example_shop(&p).0;
    let out = crate::support::strata_in(&dir, &["test"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("orders_latest_file_wins"), "{text}");
}

#[test]
fn slice_groups_a_metric() {
    let p = project("  { region = \"north\", total = 11.75, n = 2 },");
    p.write(
        "data/s.csv",
        "id,region,amount\n1,north,10.50\n2,north,1.25\n3,south,2.00\n",
    );
    p.ok(&["run"]);
    let out = p.ok(&[
        "slice",
        "bronze.sales",
        "--by",
        "region",
        "--metric",
        "sum(amount)",
        "--metric",
        "count(*)",
        "--format",
        "csv",
    ]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "region,sum(amount),count(*)",
            "north,11.75,2",
            "south,2.00,1"
        ]
    );
}

#[test]
fn status_shows_the_last_run_and_every_table() {
    let p = project("  { region = \"north\", total = 11.75, n = 2 },");
    assert!(p.ok(&["status"]).contains("no run yet"));
    p.write("data/s.csv", "id,region,amount\n1,north,10.50\n");
    p.ok(&["run"]);
    let out = p.ok(&["status"]);
    assert!(out.contains("last run") && out.contains("success"), "{out}");
    assert!(
        out.contains("bronze.sales") && out.contains("gold.by_region"),
        "{out}"
    );
    assert!(out.contains("(1 files)"), "{out}");
}
