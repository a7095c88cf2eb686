//! Table references read from a model's SQL with sqlparser (the parser
//! DataFusion uses), so comments, strings and CTE names never count as tables.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{ObjectName, ObjectNamePart, Query, Statement, Visit, Visitor};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

/// One table named in a query, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    /// The name as written, lowercased, parts joined by `.`.
    pub name: String,
    /// 1-based line of the name in the SQL text.
    pub line: usize,
    /// 1-based column of the name in the SQL text.
    pub column: usize,
}

/// Why a model's SQL could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// The parser's message without its location.
    pub message: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
}

/// Parses `sql` (one query) and returns the tables it reads, CTE names excluded.
pub fn table_references(sql: &str) -> Result<Vec<TableRef>, SqlError> {
    let statements =
        Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| parse_error(&e.to_string()))?;
    let query = match statements.as_slice() {
        [Statement::Query(q)] => q,
        [] => {
            return Err(SqlError {
                message: "the model has no SQL statement".into(),
                line: 0,
                column: 0,
            });
        }
        [_] => {
            return Err(SqlError {
                message: "a model must be one SELECT query (no DDL or DML)".into(),
                line: 0,
                column: 0,
            });
        }
        _ => {
            return Err(SqlError {
                message: format!(
                    "a model holds one query, found {} statements",
                    statements.len()
                ),
                line: 0,
                column: 0,
            });
        }
    };
    let mut v = Collector::default();
    let _ = query.visit(&mut v);
    let mut seen = BTreeSet::new();
    Ok(v.refs
        .into_iter()
        .filter(|r| r.name.contains('.') || !v.ctes.contains(&r.name))
        .filter(|r| seen.insert(r.name.clone()))
        .collect())
}

#[derive(Default)]
struct Collector {
    refs: Vec<TableRef>,
    ctes: BTreeSet<String>,
}

impl Visitor for Collector {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(cte.alias.name.value.to_lowercase());
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        let mut parts = Vec::new();
        let mut first = None;
        for p in &relation.0 {
            if let ObjectNamePart::Identifier(id) = p {
                if first.is_none() {
                    first = Some(id.span.start);
                }
                parts.push(if id.quote_style.is_some() {
                    id.value.clone()
                } else {
                    id.value.to_lowercase()
                });
            }
        }
        if parts.is_empty() {
            return ControlFlow::Continue(());
        }
        let loc = first.unwrap_or(sqlparser::tokenizer::Location { line: 0, column: 0 });
        self.refs.push(TableRef {
            name: parts.join("."),
            line: loc.line as usize,
            column: loc.column as usize,
        });
        ControlFlow::Continue(())
    }
}

fn parse_error(msg: &str) -> SqlError {
    let msg = msg.strip_prefix("sql parser error: ").unwrap_or(msg);
    if let Some(i) = msg.rfind(" at Line: ") {
        let loc = &msg[i + " at Line: ".len()..];
        let mut it = loc.split(", Column: ");
        let line = it.next().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
        let column = it.next().and_then(|c| c.trim().parse().ok()).unwrap_or(0);
        return SqlError {
            message: msg[..i].to_string(),
            line,
            column,
        };
    }
    SqlError {
        message: msg.to_string(),
        line: 0,
        column: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sql: &str) -> Vec<String> {
        table_references(sql)
            .expect("parses")
            .into_iter()
            .map(|r| r.name)
            .collect()
    }

    #[test]
    fn finds_joined_and_nested_tables() {
        assert_eq!(
            names(
                "select * from bronze.orders o join silver.customers c on o.id = c.id where o.x in (select x from gold.t)"
            ),
            vec!["bronze.orders", "silver.customers", "gold.t"]
        );
    }

    #[test]
    fn skips_ctes_comments_and_strings() {
        let sql = "/* from bronze.fake */ with recent as (select * from bronze.orders) -- from gold.nope\nselect 'from silver.x' from recent";
        assert_eq!(names(sql), vec!["bronze.orders"]);
    }

    #[test]
    fn locates_references() {
        let r = table_references("select 1\nfrom   silver.a").expect("parses");
        assert_eq!((r[0].line, r[0].column), (2, 8));
    }

    #[test]
    fn locates_syntax_errors() {
        let e = table_references("select 1\nfrom t\nwhere )").expect_err("bad");
        assert_eq!((e.line, e.column), (3, 7), "{e:?}");
    }

    #[test]
    fn refuses_non_queries() {
        assert!(table_references("drop table x").is_err());
        assert!(table_references("select 1; select 2").is_err());
    }
}
