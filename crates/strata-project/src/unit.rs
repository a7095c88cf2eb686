//! Unit tests of models: `tests/*.toml` files giving fixture rows for a
//! model's inputs and the rows it must produce. `strata test` runs them in
//! memory, without touching the lake.
//!
//! ```toml
//! model = "silver.orders"
//! description = "the latest file wins"
//!
//! [[given]]
//! table = "bronze.orders"
//! rows = [ { order_id = 1, status = "placed", _source = "a.ndjson" } ]
//!
//! [expect]
//! rows = [ { order_id = 1, status = "placed" } ]   # or csv = "tests/fixtures/x.csv"
//! ```
//! Only the columns named in the expected rows are compared, and row order
//! does not matter.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Errors, LocatedError};

/// A unit-test file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnitTest {
    /// The model under test (`silver.orders`).
    pub model: String,
    /// What the test shows.
    pub description: Option<String>,
    /// Fixture rows for the model's inputs.
    #[serde(default)]
    pub given: Vec<RawFixture>,
    /// The rows the model must produce.
    pub expect: RawFixture,
}

/// Rows inline or from a CSV file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFixture {
    /// The table (for `given`).
    pub table: Option<String>,
    /// Inline rows.
    pub rows: Option<Vec<toml::Table>>,
    /// A CSV file with a header, relative to the project.
    pub csv: Option<String>,
}

/// Rows for one table.
#[derive(Debug, Clone, PartialEq)]
pub enum Rows {
    /// Inline TOML rows.
    Inline(Vec<toml::Table>),
    /// A CSV file (absolute path).
    Csv(PathBuf),
}

/// Fixture rows for one input table.
#[derive(Debug, Clone, PartialEq)]
pub struct Fixture {
    /// The table.
    pub table: String,
    /// Its rows.
    pub rows: Rows,
}

/// A resolved unit test.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitTest {
    /// The file name without `.toml`.
    pub name: String,
    /// Path relative to the project.
    pub path: PathBuf,
    /// The model under test.
    pub model: String,
    /// What it shows.
    pub description: Option<String>,
    /// Inputs.
    pub given: Vec<Fixture>,
    /// Expected output.
    pub expect: Rows,
}

fn rows_of(root: &Path, rel: &Path, f: RawFixture, what: &str) -> Result<Rows, Errors> {
    match (f.rows, f.csv) {
        (Some(r), None) => Ok(Rows::Inline(r)),
        (None, Some(c)) => {
            let p = root.join(&c);
            if !p.is_file() {
                return Err(LocatedError::file(rel, format!("{what}: no CSV file at {c}")).into());
            }
            Ok(Rows::Csv(p))
        }
        _ => Err(LocatedError::file(rel, format!("{what}: give either `rows` or `csv`")).into()),
    }
}

/// Parses one test file.
pub fn parse_unit_test(
    root: &Path,
    rel: &Path,
    name: &str,
    text: &str,
) -> Result<UnitTest, Errors> {
    let raw: RawUnitTest = toml::from_str(text).map_err(|e| {
        Errors::from(crate::toml_error(
            rel,
            text,
            0,
            &e,
            &[
                "model",
                "description",
                "given",
                "expect",
                "table",
                "rows",
                "csv",
            ],
        ))
    })?;
    let mut errors = Errors::default();
    let mut given = vec![];
    for g in raw.given {
        let Some(table) = g.table.clone() else {
            errors.push(
                LocatedError::file(rel, "each [[given]] needs `table`")
                    .with_help("e.g. table = \"bronze.orders\""),
            );
            continue;
        };
        match rows_of(root, rel, g, &format!("given {table}")) {
            Ok(rows) => given.push(Fixture { table, rows }),
            Err(e) => errors.0.extend(e.0),
        }
    }
    let expect = match rows_of(root, rel, raw.expect, "expect") {
        Ok(r) => Some(r),
        Err(e) => {
            errors.0.extend(e.0);
            None
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let Some(expect) = expect else {
        return Err(errors);
    };
    Ok(UnitTest {
        name: name.to_string(),
        path: rel.to_path_buf(),
        model: raw.model,
        description: raw.description,
        given,
        expect,
    })
}
