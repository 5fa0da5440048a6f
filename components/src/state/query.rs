//! Dapr's state query language: parsing, and a pure evaluator used by stores
//! that filter in process (in-memory). SQL stores translate the same AST.

use std::cmp::Ordering;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::StateError;

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Eq(String, Value),
    Neq(String, Value),
    Gt(String, Value),
    Gte(String, Value),
    Lt(String, Value),
    Lte(String, Value),
    In(String, Vec<Value>),
    And(Vec<Filter>),
    Or(Vec<Filter>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    #[default]
    Asc,
    Desc,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sort {
    /// Dot path into the value, `value.` prefix removed.
    pub key: String,
    pub order: SortOrder,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub limit: Option<usize>,
    /// Opaque to clients: the offset of the next page.
    pub token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    pub filter: Option<Filter>,
    pub sort: Vec<Sort>,
    pub page: Page,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResponse {
    pub results: Vec<QueryResult>,
    /// Present when more results remain.
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryResult {
    pub key: String,
    pub data: Vec<u8>,
    pub etag: Option<String>,
}

fn bad(msg: impl Into<String>) -> StateError {
    StateError::InvalidRequest(msg.into())
}

/// Keys are dot paths of letters, digits and `_`/`-`; `value.` is optional.
fn parse_key(k: &str) -> Result<String, StateError> {
    let k = k.strip_prefix("value.").unwrap_or(k);
    let ok = !k.is_empty()
        && k.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if ok {
        Ok(k.to_string())
    } else {
        Err(bad(format!(
            "invalid key {k:?}: use a dot path like person.org"
        )))
    }
}

fn single(op: &str, v: &Value) -> Result<(String, Value), StateError> {
    let m = v
        .as_object()
        .filter(|m| m.len() == 1)
        .ok_or_else(|| bad(format!("{op} takes an object with exactly one key")))?;
    let (k, v) = m.iter().next().expect("len checked");
    if v.is_object() {
        return Err(bad(format!(
            "{op} on {k:?}: value must be a JSON scalar or array"
        )));
    }
    Ok((parse_key(k)?, v.clone()))
}

fn parse_filter(v: &Value, depth: usize) -> Result<Filter, StateError> {
    if depth > 32 {
        return Err(bad("filter nested too deeply"));
    }
    let m = v
        .as_object()
        .filter(|m| m.len() == 1)
        .ok_or_else(|| bad("a filter is an object with exactly one operator (EQ, NEQ, GT, GTE, LT, LTE, IN, AND, OR)"))?;
    let (op, arg) = m.iter().next().expect("len checked");
    Ok(match op.as_str() {
        "EQ" => single(op, arg).map(|(k, v)| Filter::Eq(k, v))?,
        "NEQ" => single(op, arg).map(|(k, v)| Filter::Neq(k, v))?,
        "GT" => single(op, arg).map(|(k, v)| Filter::Gt(k, v))?,
        "GTE" => single(op, arg).map(|(k, v)| Filter::Gte(k, v))?,
        "LT" => single(op, arg).map(|(k, v)| Filter::Lt(k, v))?,
        "LTE" => single(op, arg).map(|(k, v)| Filter::Lte(k, v))?,
        "IN" => {
            let (k, v) = single(op, arg)?;
            match v {
                Value::Array(a) if !a.is_empty() => Filter::In(k, a),
                _ => return Err(bad(format!("IN on {k:?}: value must be a non-empty array"))),
            }
        }
        "AND" | "OR" => {
            let items = arg
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| bad(format!("{op} takes a non-empty array of filters")))?;
            let fs = items
                .iter()
                .map(|f| parse_filter(f, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            if op == "AND" {
                Filter::And(fs)
            } else {
                Filter::Or(fs)
            }
        }
        other => return Err(bad(format!("unknown filter operator {other:?}"))),
    })
}

/// The query document's shape, read by [`crate::go_json`] as daprd's Go
/// decoder reads it: names in any case, `null` as absent, other names
/// ignored. The filter stays a JSON value: its operators are data.
#[derive(Deserialize)]
struct QueryJson {
    #[serde(default)]
    filter: Option<Value>,
    #[serde(default)]
    sort: Vec<SortJson>,
    #[serde(default)]
    page: PageJson,
}

#[derive(Deserialize)]
struct SortJson {
    #[serde(default)]
    key: String,
    #[serde(default)]
    order: String,
}

#[derive(Deserialize, Default)]
struct PageJson {
    #[serde(default)]
    limit: Option<Value>,
    #[serde(default)]
    token: String,
}

impl Query {
    pub fn parse(json: &[u8]) -> Result<Query, StateError> {
        let q: QueryJson = crate::go_json::from_slice(json)
            .map_err(|e| bad(format!("query is not a valid query document: {e}")))?;
        let filter = match q.filter {
            None => None,
            Some(f) if f.as_object().is_some_and(Map::is_empty) => None,
            Some(f) => Some(parse_filter(&f, 0)?),
        };
        let mut sort = Vec::with_capacity(q.sort.len());
        for item in q.sort {
            if item.key.is_empty() {
                return Err(bad("each sort entry needs a key"));
            }
            let order = match item.order.as_str() {
                "" => SortOrder::Asc,
                o if o.eq_ignore_ascii_case("ASC") => SortOrder::Asc,
                o if o.eq_ignore_ascii_case("DESC") => SortOrder::Desc,
                o => return Err(bad(format!("sort order {o:?} must be ASC or DESC"))),
            };
            sort.push(Sort {
                key: parse_key(&item.key)?,
                order,
            });
        }
        let mut page = Page::default();
        if let Some(l) = q.page.limit.filter(|l| !l.is_null()) {
            let l = l
                .as_u64()
                .filter(|l| *l > 0)
                .ok_or_else(|| bad("page.limit must be a positive integer"))?;
            page.limit = Some(usize::try_from(l).unwrap_or(usize::MAX));
        }
        let t = q.page.token;
        if !t.is_empty() {
            t.parse::<usize>()
                .map_err(|_| bad(format!("invalid page token {t:?}")))?;
            page.token = Some(t);
        }
        Ok(Query { filter, sort, page })
    }

    /// The offset a page starts at.
    pub fn offset(&self) -> usize {
        self.page
            .token
            .as_deref()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    }
}

/// The value at a dot path.
pub fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, seg| cur.get(seg))
}

/// Compares two JSON values of the same kind; `None` for mixed kinds.
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

impl Filter {
    pub fn matches(&self, doc: &Value) -> bool {
        let field = |k: &str| lookup(doc, k);
        let cmp = |k: &str, v: &Value| field(k).and_then(|f| compare(f, v));
        match self {
            Filter::Eq(k, v) => cmp(k, v) == Some(Ordering::Equal),
            Filter::Neq(k, v) => field(k).is_some_and(|f| compare(f, v) != Some(Ordering::Equal)),
            Filter::Gt(k, v) => cmp(k, v) == Some(Ordering::Greater),
            Filter::Gte(k, v) => matches!(cmp(k, v), Some(Ordering::Greater | Ordering::Equal)),
            Filter::Lt(k, v) => cmp(k, v) == Some(Ordering::Less),
            Filter::Lte(k, v) => matches!(cmp(k, v), Some(Ordering::Less | Ordering::Equal)),
            Filter::In(k, vs) => vs.iter().any(|v| cmp(k, v) == Some(Ordering::Equal)),
            Filter::And(fs) => fs.iter().all(|f| f.matches(doc)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(doc)),
        }
    }
}

/// Orders documents by the sort keys; missing fields sort last.
pub fn sort_cmp(sort: &[Sort], a: &Value, b: &Value) -> Ordering {
    for s in sort {
        let o = match (lookup(a, &s.key), lookup(b, &s.key)) {
            (Some(x), Some(y)) => {
                let o = compare(x, y).unwrap_or(Ordering::Equal);
                if s.order == SortOrder::Desc {
                    o.reverse()
                } else {
                    o
                }
            }
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_dapr_queries() {
        let q = Query::parse(
            br#"{"filter":{"OR":[{"EQ":{"value.person.org":"A"}},{"IN":{"state":["CA","WA"]}}]},
                 "sort":[{"key":"state","order":"DESC"},{"key":"person.id"}],
                 "page":{"limit":2,"token":"4"}}"#,
        )
        .unwrap();
        assert_eq!(q.sort.len(), 2);
        assert_eq!(q.sort[0].order, SortOrder::Desc);
        assert_eq!(q.offset(), 4);
        let doc = json!({"person": {"org": "A"}, "state": "NY"});
        assert!(q.filter.as_ref().unwrap().matches(&doc));
        assert!(!q.filter.unwrap().matches(&json!({"state": "NY"})));
    }

    #[test]
    fn rejects_malformed_queries() {
        for bad in [
            &br#"{"filter":{"XOR":{}}}"#[..],
            br#"{"filter":{"EQ":{"a":1,"b":2}}}"#,
            br#"{"filter":{"AND":[]}}"#,
            br#"{"filter":{"IN":{"a":[]}}}"#,
            br#"{"filter":{"EQ":{"a;drop":1}}}"#,
            br#"{"sort":[{"key":"a","order":"UP"}]}"#,
            br#"{"page":{"limit":0}}"#,
            br#"{"page":{"token":"abc"}}"#,
            br#"[1]"#,
            br#"{"#,
        ] {
            assert!(
                Query::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(Query::parse(br#"{}"#).unwrap().filter.is_none());
    }

    #[test]
    fn field_names_as_gos_decoder_reads_them() {
        // Any case, null as absent, unknown names ignored (as daprd).
        let q = Query::parse(
            br#"{"Filter":{"EQ":{"a":1}},"SORT":[{"Key":"a","ORDER":"DESC"}],"Page":{"Limit":2,"token":null},"extra":1}"#,
        )
        .unwrap();
        assert!(q.filter.is_some());
        assert_eq!(q.sort[0].order, SortOrder::Desc);
        assert_eq!(q.page.limit, Some(2));
        assert!(Query::parse(br#"{"filter":null,"sort":null,"page":null}"#).is_ok());
    }

    #[test]
    fn comparisons_are_typed() {
        let doc = json!({"n": 10, "s": "b"});
        assert!(Filter::Gt("n".into(), json!(9.5)).matches(&doc));
        assert!(Filter::Lte("s".into(), json!("b")).matches(&doc));
        assert!(!Filter::Eq("n".into(), json!("10")).matches(&doc));
        assert!(Filter::Neq("n".into(), json!(11)).matches(&doc));
        assert!(!Filter::Neq("missing".into(), json!(1)).matches(&doc));
    }
}
