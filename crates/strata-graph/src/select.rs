//! Selection expressions: which nodes a run covers.
//!
//! | expression | selects |
//! |---|---|
//! | `silver.orders` (or `orders` when unambiguous) | that node |
//! | `+NAME` | it and everything upstream |
//! | `NAME+` | it and everything downstream |
//! | `layer:silver` | every node of the layer |
//! | `tag:T` | every model tagged `T` |
//! | `a,b` or `a b` | the union |

use std::collections::BTreeSet;

use strata_project::error::did_you_mean;

use crate::Graph;

/// A selection expression that names nothing known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SelectError {
    /// What is wrong, with a suggestion.
    pub message: String,
}

impl Graph {
    /// The nodes an expression selects; an empty expression selects everything.
    pub fn select(&self, expr: &str) -> Result<BTreeSet<String>, SelectError> {
        let mut out = BTreeSet::new();
        let terms: Vec<&str> = expr
            .split([',', ' '])
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        if terms.is_empty() {
            return Ok(self.nodes().map(|n| n.name.clone()).collect());
        }
        for term in terms {
            out.extend(self.select_term(term)?);
        }
        Ok(out)
    }

    fn select_term(&self, term: &str) -> Result<BTreeSet<String>, SelectError> {
        if let Some(layer) = term.strip_prefix("layer:") {
            if strata_project::Layer::parse(layer).is_none() {
                return Err(SelectError {
                    message: format!(
                        "unknown layer `{layer}` in `{term}`; use bronze, silver or gold"
                    ),
                });
            }
            return Ok(self
                .nodes()
                .filter(|n| n.layer.as_str() == layer)
                .map(|n| n.name.clone())
                .collect());
        }
        if let Some(tag) = term.strip_prefix("tag:") {
            let s: BTreeSet<String> = self
                .nodes()
                .filter(|n| n.tags.iter().any(|t| t == tag))
                .map(|n| n.name.clone())
                .collect();
            if s.is_empty() {
                return Err(SelectError {
                    message: format!("no model has tag `{tag}`"),
                });
            }
            return Ok(s);
        }
        let (up, rest) = match term.strip_prefix('+') {
            Some(r) => (true, r),
            None => (false, term),
        };
        let (down, name) = match rest.strip_suffix('+') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let name = self.resolve_name(name)?;
        let mut s = BTreeSet::from([name.clone()]);
        if up {
            s.extend(self.upstream_closure(&name));
        }
        if down {
            s.extend(self.downstream_closure(&name));
        }
        Ok(s)
    }

    fn resolve_name(&self, name: &str) -> Result<String, SelectError> {
        if self.node(name).is_some() {
            return Ok(name.to_string());
        }
        if !name.contains('.') {
            let matches: Vec<&str> = self
                .nodes()
                .filter(|n| n.name.split_once('.').map(|(_, s)| s) == Some(name))
                .map(|n| n.name.as_str())
                .collect();
            match matches.as_slice() {
                [one] => return Ok(one.to_string()),
                [] => {}
                many => {
                    return Err(SelectError {
                        message: format!(
                            "`{name}` is ambiguous: {}; qualify it with its layer",
                            many.join(", ")
                        ),
                    });
                }
            }
        }
        let hint = did_you_mean(name, self.nodes().map(|n| n.name.as_str()))
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        Err(SelectError {
            message: format!("nothing is named `{name}`{hint}"),
        })
    }
}
