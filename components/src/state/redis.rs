//! `state.redis`: one Redis hash per key (`data`, `version` fields — the same
//! layout daprd's Redis store uses, so existing data stays readable), ETags
//! and writes checked atomically by one Lua script per call, TTLs as Redis
//! expiries. Calls go over spar's own pooled connections (`redis_wire`),
//! opened again by themselves after an outage and bounded by the configured
//! timeouts.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use super::{
    BulkItem, Concurrency, DeleteRequest, Features, GetRequest, Item, Operation, SetRequest,
    StateError, StateStore, Ttl,
};
use crate::redis_wire::{Commands, Endpoint, Limits, Reply, Wire, WireError};
use crate::registry::{BuildContext, BuildError};

/// Checks every operation against current versions (and earlier operations of
/// the same call) — an ETag is compared only with a version that exists, so
/// one sent for a missing key goes through, as with daprd's Redis store —
/// then applies them all; Redis runs a script atomically, so
/// a set, a delete and a whole transaction are all-or-nothing.
/// Per op, ARGV holds 5 fields: kind (u|d), etag, value, first-write (1|0),
/// ttl ("" default, "-1" never, else seconds).
const APPLY: &str = r#"
local pending = {}
for i = 1, #KEYS do
  local b = (i - 1) * 5
  local k = KEYS[i]
  local cur = pending[k]
  if cur == nil then cur = redis.call("HGET", k, "version") end
  local etag = ARGV[b + 2]
  if etag ~= "" then
    if cur and tostring(cur) ~= etag then
      return redis.error_reply("ETAG_MISMATCH " .. k)
    end
  elseif ARGV[b + 1] == "u" and ARGV[b + 4] == "1" and cur then
    return redis.error_reply("ETAG_MISMATCH " .. k)
  end
  if ARGV[b + 1] == "u" then
    pending[k] = (tonumber(cur) or 0) + 1
  else
    pending[k] = false
  end
end
for i = 1, #KEYS do
  local b = (i - 1) * 5
  local k = KEYS[i]
  if ARGV[b + 1] == "u" then
    redis.call("HSET", k, "data", ARGV[b + 3])
    redis.call("HINCRBY", k, "version", 1)
    local ttl = ARGV[b + 5]
    if ttl == "" or ttl == "-1" then
      redis.call("PERSIST", k)
    else
      redis.call("EXPIRE", k, ttl)
    end
  else
    redis.call("DEL", k)
  end
end
return #KEYS
"#;

pub struct RedisStore {
    wire: Wire,
    /// `APPLY`'s SHA-1, for `EVALSHA`.
    apply_sha: String,
    /// `ttlInSeconds` component metadata: the TTL of writes that set none.
    default_ttl: Option<u64>,
}

pub(crate) fn field(c: &spar_config::Component, name: &str, message: String) -> BuildError {
    BuildError::Metadata {
        component: c.name().to_string(),
        field: name.to_string(),
        message,
    }
}

pub(crate) fn duration_meta(
    c: &spar_config::Component,
    name: &str,
    default: Duration,
) -> Result<Duration, BuildError> {
    match c.meta(name) {
        None => Ok(default),
        Some(v) => spar_config::parse_duration(&v)
            // Dapr also accepts plain numbers of seconds for some of these.
            .or_else(|e| {
                v.trim()
                    .parse::<u64>()
                    .map(Duration::from_secs)
                    .map_err(|_| e)
            })
            .map_err(|e| field(c, name, e)),
    }
}

/// Where and how to connect, from Dapr's metadata names.
pub fn endpoint(c: &spar_config::Component) -> Result<Endpoint, BuildError> {
    let host = c
        .meta("redisHost")
        .filter(|h| !h.trim().is_empty())
        .ok_or_else(|| field(c, "redisHost", "is required (host:port)".into()))?;
    let host = host.trim();
    if host.contains('/') || host.contains('@') {
        return Err(field(c, "redisHost", format!("{host:?} must be host:port")));
    }
    let tls = match c.meta("enableTLS").as_deref().map(str::trim) {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(o) => {
            return Err(field(
                c,
                "enableTLS",
                format!("{o:?} must be true or false"),
            ))
        }
    };
    let db: i64 = match c.meta("redisDB") {
        None => 0,
        Some(v) => v
            .trim()
            .parse()
            .ok()
            .filter(|d| *d >= 0)
            .ok_or_else(|| field(c, "redisDB", format!("{v:?} must be a database number")))?,
    };
    if let Some(t) = c
        .meta("redisType")
        .filter(|t| !t.eq_ignore_ascii_case("node"))
    {
        return Err(field(
            c,
            "redisType",
            format!("{t:?} is not supported yet (only node)"),
        ));
    }
    if c.meta("failover").is_some_and(|f| f == "true") {
        return Err(field(
            c,
            "failover",
            "Sentinel failover is not supported yet".into(),
        ));
    }
    Ok(Endpoint {
        host: host.to_string(),
        tls,
        db,
        username: c.meta("redisUsername").filter(|u| !u.is_empty()),
        password: c.meta("redisPassword").filter(|p| !p.is_empty()),
    })
}

/// The `redis` crate's connection URL for the same endpoint (pub/sub).
pub fn connection_url(c: &spar_config::Component) -> Result<String, BuildError> {
    let e = endpoint(c)?;
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let auth = match (&e.username, &e.password) {
        (Some(u), Some(p)) => format!("{}:{}@", enc(u), enc(p)),
        (_, Some(p)) => format!(":{}@", enc(p)),
        _ => String::new(),
    };
    let scheme = if e.tls { "rediss" } else { "redis" };
    Ok(format!("{scheme}://{auth}{}/{}", e.host, e.db))
}

pub fn build(
    c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn StateStore>, BuildError> {
    let endpoint = endpoint(c)?;
    let retries: usize = match c.meta("maxRetries") {
        None => 3,
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| field(c, "maxRetries", format!("{v:?} must be a whole number")))?,
    };
    let limits = Limits {
        dial: duration_meta(c, "dialTimeout", Duration::from_secs(5))?,
        read: duration_meta(c, "readTimeout", Duration::from_secs(3))?,
        retries,
        max_backoff: duration_meta(c, "maxRetryBackoff", Duration::from_secs(2))?,
    };
    let default_ttl = match c.meta("ttlInSeconds") {
        None => None,
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if n > 0 => Some(n as u64),
            Ok(_) => None,
            Err(_) => {
                return Err(field(
                    c,
                    "ttlInSeconds",
                    format!("{v:?} must be a whole number"),
                ))
            }
        },
    };
    // Lazy: the sidecar starts even while Redis is down.
    let wire = Wire::new(endpoint, limits).map_err(|m| field(c, "enableTLS", m))?;
    Ok(Arc::new(RedisStore {
        wire,
        apply_sha: redis::Script::new(APPLY).get_hash().to_string(),
        default_ttl,
    }))
}

fn failed(e: WireError) -> StateError {
    StateError::Backend(format!("redis: {e}"))
}

/// A server's error reply, ETag mismatches told apart.
fn refused(e: &str) -> StateError {
    if e.contains("ETAG_MISMATCH") {
        StateError::EtagMismatch("the stored version differs".into())
    } else {
        StateError::Backend(format!("redis: {e}"))
    }
}

fn unexpected(what: &str, r: &Reply) -> StateError {
    match r {
        Reply::Error(e) => refused(e),
        other => StateError::Backend(format!("redis: unexpected reply to {what}: {other:?}")),
    }
}

/// ETags are versions; anything else can never match.
fn check_etag_syntax(etag: Option<&str>) -> Result<(), StateError> {
    match etag {
        Some(e) if e.parse::<u64>().is_err() => Err(StateError::EtagInvalid(e.to_string())),
        _ => Ok(()),
    }
}

/// An item from the replies to `HMGET key data version` and `PTTL key`.
fn item_from(hmget: Reply, pttl: Reply) -> Result<Option<Item>, StateError> {
    let Reply::Array(fields) = hmget else {
        return Err(unexpected("HMGET", &hmget));
    };
    let mut fields = fields.into_iter();
    let data = match fields.next() {
        Some(Reply::Bulk(d)) => d,
        Some(Reply::Nil) | None => return Ok(None),
        Some(other) => return Err(unexpected("HMGET", &other)),
    };
    let etag = match fields.next() {
        Some(Reply::Bulk(v)) => Some(String::from_utf8_lossy(&v).into_owned()),
        Some(Reply::Int(v)) => Some(v.to_string()),
        _ => None,
    };
    let pttl = match pttl {
        Reply::Int(ms) => ms,
        other => return Err(unexpected("PTTL", &other)),
    };
    Ok(Some(Item {
        data,
        etag,
        expires_at: (pttl > 0).then(|| SystemTime::now() + Duration::from_millis(pttl as u64)),
    }))
}

impl RedisStore {
    /// `APPLY` over `ops`, by `EVALSHA`, or `EVAL` once when the server has
    /// not cached the script yet (first call, a restart, `SCRIPT FLUSH`).
    async fn run(&self, ops: &[Operation]) -> Result<(), StateError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut ttls = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Operation::Upsert(r) => {
                    check_etag_syntax(r.etag.as_deref())?;
                    ttls.push(match r.ttl {
                        Some(Ttl::Seconds(s)) => s.to_string(),
                        Some(Ttl::Never) => "-1".into(),
                        None => self.default_ttl.map(|s| s.to_string()).unwrap_or_default(),
                    });
                }
                Operation::Delete(r) => {
                    check_etag_syntax(r.etag.as_deref())?;
                    ttls.push(String::new());
                }
            }
        }
        let script = |how: &str, what: &str| {
            let size: usize = ops.iter().map(|o| o.key().len() + value_len(o) + 64).sum();
            let mut c = Commands::with_capacity(what.len() + size + 32);
            c.command(3 + ops.len() * 6)
                .arg(how)
                .arg(what)
                .arg(ops.len().to_string());
            for op in ops {
                c.arg(op.key());
            }
            for (op, ttl) in ops.iter().zip(&ttls) {
                match op {
                    Operation::Upsert(r) => {
                        let fw = if r.concurrency == Concurrency::FirstWrite {
                            "1"
                        } else {
                            "0"
                        };
                        c.arg("u")
                            .arg(r.etag.as_deref().unwrap_or(""))
                            .arg(&r.value)
                            .arg(fw)
                            .arg(ttl);
                    }
                    Operation::Delete(r) => {
                        c.arg("d")
                            .arg(r.etag.as_deref().unwrap_or(""))
                            .arg("")
                            .arg("0")
                            .arg("");
                    }
                }
            }
            c
        };
        let mut reply = self
            .call(&script("EVALSHA", &self.apply_sha), false)
            .await?;
        if matches!(&reply, Reply::Error(e) if e.starts_with("NOSCRIPT")) {
            reply = self.call(&script("EVAL", APPLY), false).await?;
        }
        match reply {
            Reply::Int(_) => Ok(()),
            other => Err(unexpected("the write script", &other)),
        }
    }

    /// One command's reply.
    async fn call(&self, c: &Commands, idempotent: bool) -> Result<Reply, StateError> {
        let mut r = self.wire.query(c, idempotent).await.map_err(failed)?;
        r.pop()
            .ok_or_else(|| StateError::Backend("redis: no reply".into()))
    }
}

fn value_len(op: &Operation) -> usize {
    match op {
        Operation::Upsert(r) => r.value.len(),
        Operation::Delete(_) => 0,
    }
}

#[async_trait]
impl StateStore for RedisStore {
    fn features(&self) -> Features {
        // No QUERY_API: Dapr's needs the RediSearch module, which plain Redis
        // does not have; the API answers with Dapr's not-supported error.
        Features {
            etag: true,
            transactional: true,
            ttl: true,
            query: false,
        }
    }

    /// `PING`, as daprd's Redis store does when it starts.
    async fn init(&self) -> Result<(), StateError> {
        let mut c = Commands::with_capacity(16);
        c.command(1).arg("PING");
        match self.call(&c, true).await? {
            Reply::Error(e) => Err(StateError::Backend(format!("redis: {e}"))),
            _ => Ok(()),
        }
    }

    fn missing_key_etag_conflicts(&self) -> bool {
        false
    }

    /// Fields and expiry read together in one `MULTI`/`EXEC`.
    async fn get(&self, req: &GetRequest) -> Result<Option<Item>, StateError> {
        let k = &req.key;
        let mut c = Commands::with_capacity(96 + 2 * k.len());
        c.command(1).arg("MULTI");
        c.command(4).arg("HMGET").arg(k).arg("data").arg("version");
        c.command(2).arg("PTTL").arg(k);
        c.command(1).arg("EXEC");
        let exec = self.call(&c, true).await?;
        let Reply::Array(mut r) = exec else {
            return Err(unexpected("EXEC", &exec));
        };
        match (r.pop(), r.pop(), r.pop()) {
            (Some(pttl), Some(hmget), None) => item_from(hmget, pttl),
            _ => Err(StateError::Backend(
                "redis: EXEC did not answer both reads".into(),
            )),
        }
    }

    /// One round trip for all keys; a key the server refuses fails alone.
    async fn bulk_get(&self, reqs: &[GetRequest]) -> Result<Vec<BulkItem>, StateError> {
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = Commands::with_capacity(reqs.iter().map(|r| 48 + 2 * r.key.len()).sum());
        for r in reqs {
            c.command(4)
                .arg("HMGET")
                .arg(&r.key)
                .arg("data")
                .arg("version");
            c.command(2).arg("PTTL").arg(&r.key);
        }
        let replies = self.wire.query(&c, true).await.map_err(failed)?;
        let mut replies = replies.into_iter();
        Ok(reqs
            .iter()
            .map(|r| {
                let item = match (replies.next(), replies.next()) {
                    (Some(hmget), Some(pttl)) => item_from(hmget, pttl),
                    _ => Err(StateError::Backend("redis: missing reply".into())),
                };
                match item {
                    Ok(item) => BulkItem::found(r.key.clone(), item),
                    Err(e) => BulkItem::failed(r.key.clone(), e.to_string()),
                }
            })
            .collect())
    }

    async fn set(&self, req: &SetRequest) -> Result<(), StateError> {
        self.run(&[Operation::Upsert(req.clone())]).await
    }

    async fn delete(&self, req: &DeleteRequest) -> Result<(), StateError> {
        self.run(&[Operation::Delete(req.clone())]).await
    }

    async fn transact(&self, ops: &[Operation]) -> Result<(), StateError> {
        self.run(ops).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comp(meta: &[(&str, &str)]) -> spar_config::Component {
        let mut y = String::from("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: r\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n");
        for (k, v) in meta {
            y.push_str(&format!("  - name: {k}\n    value: \"{v}\"\n"));
        }
        serde_yaml::from_str(&y).unwrap()
    }

    #[test]
    fn urls_from_metadata() {
        assert_eq!(
            connection_url(&comp(&[("redisHost", "localhost:6379")])).unwrap(),
            "redis://localhost:6379/0"
        );
        assert_eq!(
            connection_url(&comp(&[
                ("redisHost", "h:1"),
                ("redisPassword", "p@ss/word"),
                ("redisDB", "3"),
                ("enableTLS", "true")
            ]))
            .unwrap(),
            "rediss://:p%40ss%2Fword@h:1/3"
        );
        assert!(connection_url(&comp(&[])).is_err());
        assert!(connection_url(&comp(&[("redisHost", "h:1"), ("redisDB", "-1")])).is_err());
        assert!(connection_url(&comp(&[("redisHost", "h:1"), ("enableTLS", "maybe")])).is_err());
        assert!(connection_url(&comp(&[("redisHost", "h:1"), ("redisType", "cluster")])).is_err());
    }
}
