//! Request parameters bound into statements and result rows turned into
//! JSON, for components that run statements they are given (the SQL
//! bindings). Parameters are always bound, never spliced into the text.
//!
//! A column is decoded as a bool when declared one, else as the first of integers, floats, text, JSON
//! and bytes (base64) that its type accepts; other types (NUMERIC,
//! timestamps) come back as `null` unless the statement casts them to
//! text.

use base64::Engine;
use serde_json::Value;
use sqlx::{Column, Row};

/// `params` metadata: a JSON array of values (absent: none).
pub fn params(raw: Option<&String>) -> Result<Vec<Value>, String> {
    match raw.map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(Vec::new()),
        Some(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(a)) => Ok(a),
            _ => Err(format!("params {s:?} is not a JSON array")),
        },
    }
}

/// Binds each JSON value as its closest SQL type.
macro_rules! bind_all {
    ($q:expr, $params:expr) => {{
        let mut q = $q;
        for p in $params {
            q = match p {
                serde_json::Value::Null => q.bind(None::<String>),
                serde_json::Value::Bool(b) => q.bind(*b),
                serde_json::Value::Number(n) if n.is_i64() => q.bind(n.as_i64()),
                serde_json::Value::Number(n) => q.bind(n.as_f64()),
                serde_json::Value::String(s) => q.bind(s.clone()),
                other => q.bind(sqlx::types::Json(other.clone())),
            };
        }
        q
    }};
}
pub(crate) use bind_all;

/// One cell as JSON: the first type the column's type decodes as.
macro_rules! cell {
    ($row:expr, $i:expr) => {{
        let (row, i) = ($row, $i);
        // MySQL decodes any integer as bool: only a declared boolean is one.
        let boolean = matches!(
            sqlx::TypeInfo::name(row.column(i).type_info()),
            "BOOL" | "BOOLEAN"
        );
        if let Some(v) = boolean
            .then(|| row.try_get::<Option<bool>, _>(i).ok())
            .flatten()
        {
            v.map_or(Value::Null, Value::Bool)
        } else if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
            v.map_or(Value::Null, Value::from)
        } else if let Ok(v) = row.try_get::<Option<i32>, _>(i) {
            v.map_or(Value::Null, Value::from)
        } else if let Ok(v) = row.try_get::<Option<i16>, _>(i) {
            v.map_or(Value::Null, Value::from)
        } else if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
            v.map_or(Value::Null, Value::from)
        } else if let Ok(v) = row.try_get::<Option<f32>, _>(i) {
            v.map_or(Value::Null, |f| Value::from(f as f64))
        } else if let Ok(v) = row.try_get::<Option<String>, _>(i) {
            v.map_or(Value::Null, Value::String)
        } else if let Ok(v) = row.try_get::<Option<sqlx::types::Json<Value>>, _>(i) {
            v.map_or(Value::Null, |j| j.0)
        } else if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(i) {
            v.map_or(Value::Null, |b| {
                Value::String(base64::engine::general_purpose::STANDARD.encode(b))
            })
        } else {
            Value::Null
        }
    }};
}

/// PostgreSQL rows as daprd's binding answers: an array of arrays.
pub fn pg_rows(rows: &[sqlx::postgres::PgRow]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| Value::Array((0..r.len()).map(|i| cell!(r, i)).collect()))
            .collect(),
    )
}

/// MySQL rows as daprd's binding answers: an array of objects by column
/// name.
pub fn mysql_rows(rows: &[sqlx::mysql::MySqlRow]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                Value::Object(
                    r.columns()
                        .iter()
                        .enumerate()
                        .map(|(i, c)| (c.name().to_string(), cell!(r, i)))
                        .collect(),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_a_json_array() {
        assert_eq!(params(None).unwrap(), Vec::<Value>::new());
        assert_eq!(params(Some(&r#"[1,"a",null]"#.into())).unwrap().len(), 3);
        assert!(params(Some(&"{}".into())).is_err());
        assert!(params(Some(&"1; drop table x".into())).is_err());
    }
}
