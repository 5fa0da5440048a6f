//! `state.redis`: one Redis hash per key (`data`, `version` fields — the same
//! layout daprd's Redis store uses, so existing data stays readable), ETags
//! and writes checked atomically by one Lua script per call, TTLs as Redis
//! expiries. Calls go over spar's own pooled connections (`redis_wire`),
//! opened again by themselves after an outage and bounded by the configured
//! timeouts.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{
    BulkItem, Concurrency, DeleteRequest, Features, GetRequest, Item, Operation, SetRequest,
    StateError, StateStore, Ttl,
};
use crate::build::{BuildContext, BuildError};
use crate::meta::Meta;
use crate::redis_wire::{self, Commands, Reply, Wire, WireError};

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

pub fn build(
    c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn StateStore>, BuildError> {
    let m = Meta::new(c);
    let endpoint = redis_wire::endpoint(c)?;
    let limits = redis_wire::limits(c)?;
    // Zero or less: no default TTL, as daprd.
    let default_ttl = m
        .int_opt::<i64>("ttlInSeconds")?
        .filter(|n| *n > 0)
        .map(|n| n as u64);
    // Lazy: the sidecar starts even while Redis is down.
    let wire = Wire::new(endpoint, limits).map_err(|e| m.error("enableTLS", e))?;
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
