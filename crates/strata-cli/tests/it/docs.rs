//! `strata docs`: the catalog as a static site — tables, columns with their
//! docs, checks with their last results, data products with SLAs, lineage.

use crate::support::TestProject;

#[test]
fn docs_show_tables_columns_checks_products_and_lineage() {
    let p = TestProject::new();
    p.write(
        "strata.toml",
        "[project]\nname = \"cat\"\n[sources.ev]\nformat = \"csv\"\npath = \"data/*.csv\"\ndescription = \"Events <raw>\"\ncolumns = { id = \"bigint\", kind = \"string\" }\n\n[products.kinds]\ndescription = \"Events per kind\"\nowner = \"analytics\"\nconsumers = [\"finance\"]\nmodels = [\"gold.kinds\"]\nfreshness = \"26h\"\naccess = [\"sql\"]\n",
    );
    p.write("data/a.csv", "id,kind\n1,a\n2,b\n3,b\n");
    p.write(
        "models/gold/kinds.sql",
        "/*\ndescription = \"Events per kind.\"\nowner = \"analytics\"\n[columns.kind]\ntype = \"string\"\ndescription = \"The event's kind.\"\n[columns.n]\ntype = \"bigint\"\nnullable = false\n[[checks]]\nunique = [\"kind\"]\n[[checks]]\nrow_count = { min = 5 }\nseverity = \"warn\"\n*/\nselect kind, count(*) as n from bronze.ev group by kind",
    );
    // Before any run: declared columns, checks not run yet.
    let site = p.path().join("site");
    let site = site.to_str().expect("utf-8 path");
    let out = p.ok(&["docs", "--out", site]);
    assert!(out.contains("2 tables and 1 data products"), "{out}");
    p.ok(&["run"]);
    p.ok(&["docs", "--out", site]);
    let html = std::fs::read_to_string(p.path().join("site/index.html")).expect("index.html");
    for needle in [
        "cat — data catalog",
        "Events &lt;raw&gt;",
        "The event&#39;s kind.",
        "<b>kinds</b>",
        "finance",
        "26h",
        "id=\"t-gold-kinds\"",
        "<svg",
        "href=\"#t-bronze-ev\"",
        "row_count",
    ] {
        let needle = needle.replace("&#39;", "'");
        assert!(html.contains(&needle), "missing {needle}");
    }
    let catalog: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(p.path().join("site/catalog.json")).expect("catalog.json"),
    )
    .expect("json");
    let gold = catalog["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["name"] == "gold.kinds")
        .expect("gold.kinds");
    assert_eq!(gold["upstream"][0], "bronze.ev");
    assert_eq!(gold["products"][0], "kinds");
    assert_eq!(gold["version"], 0);
    let n = gold["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .find(|c| c["name"] == "n")
        .expect("n");
    assert_eq!(
        (n["ty"].as_str(), n["nullable"].as_bool()),
        (Some("bigint"), Some(false))
    );
    // Column lineage: each column's origins one layer up.
    let kind = gold["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .find(|c| c["name"] == "kind")
        .expect("kind");
    assert_eq!(kind["derived_from"][0], "bronze.ev.kind (copy)");
    assert!(html.contains("<th>derived from</th>"));
    assert!(html.contains("<a href=\"#t-bronze-ev\"><code>bronze.ev.kind</code></a> (copy)"));
    // What a reader sees: the site from the file system in headless Chromium.
    let driver = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard/docs.mjs");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("docs.png");
    let out = std::process::Command::new("node")
        .arg(&driver)
        .arg(p.path().join("site"))
        .arg(&shot)
        .output()
        .expect("node (scripts/test.sh installs playwright-core and chromium)");
    assert!(
        out.status.success(),
        "docs site in Chromium:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::metadata(&shot).expect("screenshot").len() > 10_000);
    let checks: Vec<(String, String)> = gold["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").to_string(),
                c["last_status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        checks.contains(&("unique(kind)".into(), "pass".into())),
        "{checks:?}"
    );
    assert!(
        checks
            .iter()
            .any(|(c, s)| c.starts_with("row_count") && s == "warn"),
        "{checks:?}"
    );
    assert_eq!(
        catalog["products"][0]["fresh"], true,
        "built just now, SLA 26h"
    );
}
