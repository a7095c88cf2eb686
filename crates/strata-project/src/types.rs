//! Column types users declare for sources, independent of Arrow.

use std::fmt;
use std::str::FromStr;

/// A column type as written in `columns = { id = "bigint" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ColumnType {
    /// 64-bit integer (`bigint`, `int`, `integer`, `long`).
    Int64,
    /// 64-bit float (`double`, `float`, `real`).
    Float64,
    /// Text (`string`, `text`, `varchar`).
    Utf8,
    /// `boolean` / `bool`.
    Boolean,
    /// Calendar date (`date`), `YYYY-MM-DD`.
    Date,
    /// Timestamp without time zone, microseconds (`timestamp`).
    Timestamp,
    /// `decimal(p,s)`.
    Decimal(u8, i8),
}

impl FromStr for ColumnType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        Ok(match t.as_str() {
            "bigint" | "int" | "integer" | "long" | "int64" => Self::Int64,
            "double" | "float" | "real" | "float64" => Self::Float64,
            "string" | "text" | "varchar" | "utf8" => Self::Utf8,
            "boolean" | "bool" => Self::Boolean,
            "date" => Self::Date,
            "timestamp" => Self::Timestamp,
            _ => {
                if let Some(inner) = t.strip_prefix("decimal(").and_then(|r| r.strip_suffix(')')) {
                    let mut parts = inner.split(',').map(str::trim);
                    let p = parts.next().and_then(|p| p.parse::<u8>().ok());
                    let sc = parts.next().and_then(|p| p.parse::<i8>().ok()).or(Some(0));
                    if let (Some(p), Some(sc), None) = (p, sc, parts.next())
                        && (1..=38).contains(&p)
                        && sc >= 0
                        && (sc as u8) <= p
                    {
                        return Ok(Self::Decimal(p, sc));
                    }
                }
                return Err(format!(
                    "unknown column type `{s}`; use one of bigint, double, string, boolean, date, timestamp, decimal(p,s)"
                ));
            }
        })
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int64 => f.write_str("bigint"),
            Self::Float64 => f.write_str("double"),
            Self::Utf8 => f.write_str("string"),
            Self::Boolean => f.write_str("boolean"),
            Self::Date => f.write_str("date"),
            Self::Timestamp => f.write_str("timestamp"),
            Self::Decimal(p, s) => write!(f, "decimal({p},{s})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_decimals() {
        assert_eq!("BIGINT".parse::<ColumnType>(), Ok(ColumnType::Int64));
        assert_eq!(
            "decimal(15, 2)".parse::<ColumnType>(),
            Ok(ColumnType::Decimal(15, 2))
        );
        assert!("decimal(2,5)".parse::<ColumnType>().is_err());
        assert!("bignum".parse::<ColumnType>().is_err());
    }
}
