//! Schema inference for sources without declared columns: the most specific
//! type that every sampled non-null value parses as.

use serde_json::Value;
use strata_project::ColumnType;

use super::rows::parse_text;

/// Rows sampled for inference.
pub const SAMPLE_ROWS: usize = 1000;

const CANDIDATES: [ColumnType; 5] = [
    ColumnType::Int64,
    ColumnType::Float64,
    ColumnType::Boolean,
    ColumnType::Date,
    ColumnType::Timestamp,
];

/// The type for a column of text values (nulls already removed).
pub fn infer_text<'a>(values: impl Iterator<Item = &'a str> + Clone) -> ColumnType {
    if values.clone().next().is_none() {
        return ColumnType::Utf8;
    }
    CANDIDATES
        .into_iter()
        .find(|t| values.clone().all(|v| parse_text(v, *t).is_ok()))
        .unwrap_or(ColumnType::Utf8)
}

/// The type for a column of JSON values (nulls skipped).
pub fn infer_json<'a>(values: impl Iterator<Item = &'a Value> + Clone) -> ColumnType {
    let non_null = values.filter(|v| !v.is_null());
    let mut ints = true;
    let mut nums = true;
    let mut bools = true;
    let mut strings = true;
    let mut seen = false;
    for v in non_null.clone() {
        seen = true;
        ints &= v.as_i64().is_some();
        nums &= v.is_number();
        bools &= v.is_boolean();
        strings &= v.is_string();
    }
    if !seen {
        return ColumnType::Utf8;
    }
    if ints {
        return ColumnType::Int64;
    }
    if nums {
        return ColumnType::Float64;
    }
    if bools {
        return ColumnType::Boolean;
    }
    if strings {
        let texts = non_null.filter_map(Value::as_str);
        return match infer_text(texts) {
            t @ (ColumnType::Date | ColumnType::Timestamp) => t,
            _ => ColumnType::Utf8,
        };
    }
    ColumnType::Utf8
}

pub use strata_project::normalize_name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_most_specific_type() {
        assert_eq!(infer_text(["1", "2"].into_iter()), ColumnType::Int64);
        assert_eq!(infer_text(["1", "2.5"].into_iter()), ColumnType::Float64);
        assert_eq!(infer_text(["2024-01-01"].into_iter()), ColumnType::Date);
        assert_eq!(
            infer_text(["2024-01-01T10:00:00"].into_iter()),
            ColumnType::Timestamp
        );
        assert_eq!(infer_text(["a", "1"].into_iter()), ColumnType::Utf8);
        let j = [
            serde_json::json!(1),
            serde_json::json!(null),
            serde_json::json!(2),
        ];
        assert_eq!(infer_json(j.iter()), ColumnType::Int64);
        let j = [serde_json::json!("2024-01-01")];
        assert_eq!(infer_json(j.iter()), ColumnType::Date);
    }

    #[test]
    fn normalizes_names() {
        assert_eq!(normalize_name("Customer ID"), "customer_id");
        assert_eq!(normalize_name("1st"), "_1st");
    }
}
