//! Pieces every state store shares: version ETags (parsed and checked),
//! TTL expiry and query paging. The expired-entry sweeper any kind may run
//! is `crate::sweep`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::query::{Query, QueryResponse, QueryResult};
use super::{Item, StateError, Ttl};

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// ETags are integer versions; anything else is an invalid ETag (HTTP 400).
pub(crate) fn parse_etag(e: &str) -> Result<i64, StateError> {
    e.parse()
        .map_err(|_| StateError::EtagInvalid(e.to_string()))
}

/// ETag rules shared by writes and deletes (see `StateStore`): a given ETag
/// must equal the stored version; a first-write without one needs no live
/// row.
pub(crate) fn check_etag(
    current: Option<i64>,
    etag: Option<&str>,
    first_write: bool,
) -> Result<(), StateError> {
    match etag {
        Some(e) if current != Some(parse_etag(e)?) => Err(StateError::EtagMismatch(format!(
            "etag {e} does not match the stored version"
        ))),
        None if first_write && current.is_some() => Err(StateError::EtagMismatch(
            "first-write: the key already exists and no etag was given".into(),
        )),
        _ => Ok(()),
    }
}

/// The expiry instant a TTL gives, if any.
pub(crate) fn expiry(ttl: Option<Ttl>, now: SystemTime) -> Option<SystemTime> {
    match ttl {
        Some(Ttl::Seconds(s)) => Some(now + Duration::from_secs(s)),
        Some(Ttl::Never) | None => None,
    }
}

/// The expiry instant (ms since the epoch) a TTL gives, if any.
pub(crate) fn expires_ms(ttl: Option<Ttl>, now: i64) -> Option<i64> {
    match ttl {
        Some(Ttl::Seconds(s)) => Some(now.saturating_add((s as i64).saturating_mul(1000))),
        _ => None,
    }
}

pub(crate) fn mismatch(key: &str) -> StateError {
    StateError::EtagMismatch(format!("key {key:?}: the stored version differs"))
}

/// Trims rows fetched with `LIMIT limit + 1` to the page and sets the token
/// (the next offset) when another page exists.
pub(crate) fn page(mut results: Vec<QueryResult>, q: &Query) -> QueryResponse {
    let token = match q.page.limit {
        Some(l) if results.len() > l => {
            results.truncate(l);
            Some((q.offset() + l).to_string())
        }
        _ => None,
    };
    QueryResponse { results, token }
}

/// A stored row as an [`Item`]: version ETag, expiry in ms since the epoch.
pub(crate) fn item(data: Vec<u8>, etag: i64, expires_ms: Option<i64>) -> Item {
    Item {
        data,
        etag: Some(etag.to_string()),
        expires_at: expires_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)),
    }
}
