//! `state.redis`: one Redis hash per key (`data`, `version` fields — the same
//! layout daprd's Redis store uses, so existing data stays readable), ETags
//! and writes checked atomically by one Lua script per call, TTLs as Redis
//! expiries. The connection manager reconnects by itself after an outage;
//! every call is bounded by the configured timeouts.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script, Value};

use super::{
    BulkItem, Concurrency, DeleteRequest, Features, GetRequest, Item, Operation, SetRequest,
    StateError, StateStore, Ttl,
};
use crate::per_thread::PerThread;
use crate::registry::{BuildContext, BuildError};

/// Checks every operation against current versions (and earlier operations of
/// the same call), then applies them all; Redis runs a script atomically, so
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
    if not cur or tostring(cur) ~= etag then
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
    /// One connection per calling thread (`per_thread.rs`).
    conn: PerThread<ConnectionManager>,
    apply: Script,
    /// `ttlInSeconds` component metadata: the TTL of writes that set none.
    default_ttl: Option<u64>,
    timeout: Duration,
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

/// The connection URL from Dapr's metadata names.
pub fn connection_url(c: &spar_config::Component) -> Result<String, BuildError> {
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
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let auth = match (c.meta("redisUsername"), c.meta("redisPassword")) {
        (Some(u), Some(p)) if !u.is_empty() => format!("{}:{}@", enc(&u), enc(&p)),
        (_, Some(p)) if !p.is_empty() => format!(":{}@", enc(&p)),
        _ => String::new(),
    };
    let scheme = if tls { "rediss" } else { "redis" };
    Ok(format!("{scheme}://{auth}{host}/{db}"))
}

pub fn build(
    c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn StateStore>, BuildError> {
    let url = connection_url(c)?;
    let client =
        redis::Client::open(url.as_str()).map_err(|e| field(c, "redisHost", e.to_string()))?;
    let retries: usize = match c.meta("maxRetries") {
        None => 3,
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| field(c, "maxRetries", format!("{v:?} must be a whole number")))?,
    };
    let dial = duration_meta(c, "dialTimeout", Duration::from_secs(5))?;
    let read = duration_meta(c, "readTimeout", Duration::from_secs(3))?;
    let backoff = duration_meta(c, "maxRetryBackoff", Duration::from_secs(2))?;
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
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(dial))
        .set_response_timeout(Some(read))
        .set_number_of_retries(retries)
        .set_max_delay(backoff);
    let conn = per_thread_manager(c, client, config)?;
    Ok(Arc::new(RedisStore {
        conn,
        apply: Script::new(APPLY),
        default_ttl,
        timeout: dial + read,
    }))
}

/// One connection manager per calling thread (`per_thread.rs`). Lazy: the
/// sidecar starts even while Redis is down, and each connects (and
/// reconnects after outages) on its own.
pub(crate) fn per_thread_manager(
    c: &spar_config::Component,
    client: redis::Client,
    config: ConnectionManagerConfig,
) -> Result<PerThread<ConnectionManager>, BuildError> {
    let first =
        ConnectionManager::new_lazy_with_config(client.clone(), config.clone()).map_err(|e| {
            BuildError::Init {
                component: c.name().to_string(),
                message: e.to_string(),
            }
        })?;
    // A manager spawns its watcher task where it is made: only inside a
    // runtime.
    Ok(PerThread::new(first, move || {
        tokio::runtime::Handle::try_current().ok()?;
        ConnectionManager::new_lazy_with_config(client.clone(), config.clone()).ok()
    }))
}

fn backend(e: RedisError) -> StateError {
    if e.to_string().contains("ETAG_MISMATCH") {
        StateError::EtagMismatch("the stored version differs".into())
    } else {
        StateError::Backend(format!("redis: {e}"))
    }
}

/// ETags are versions; anything else can never match.
fn check_etag_syntax(etag: Option<&str>) -> Result<(), StateError> {
    match etag {
        Some(e) if e.parse::<u64>().is_err() => Err(StateError::EtagInvalid(e.to_string())),
        _ => Ok(()),
    }
}

fn item_from(data: Value, version: Value, pttl: i64) -> Option<Item> {
    let data: Option<Vec<u8>> = redis::from_redis_value(data).ok()?;
    let version: Option<String> = redis::from_redis_value(version).ok()?;
    Some(Item {
        data: data?,
        etag: version,
        expires_at: (pttl > 0).then(|| SystemTime::now() + Duration::from_millis(pttl as u64)),
    })
}

impl RedisStore {
    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StateError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map_err(backend),
            Err(_) => Err(StateError::Backend(format!(
                "redis: no answer within {:?}",
                self.timeout
            ))),
        }
    }

    async fn run(&self, ops: &[Operation]) -> Result<(), StateError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut inv = self.apply.prepare_invoke();
        for op in ops {
            inv.key(op.key());
            match op {
                Operation::Upsert(r) => {
                    check_etag_syntax(r.etag.as_deref())?;
                    let ttl = match r.ttl {
                        Some(Ttl::Seconds(s)) => s.to_string(),
                        Some(Ttl::Never) => "-1".into(),
                        None => self.default_ttl.map(|s| s.to_string()).unwrap_or_default(),
                    };
                    let fw = if r.concurrency == Concurrency::FirstWrite {
                        "1"
                    } else {
                        "0"
                    };
                    inv.arg("u")
                        .arg(r.etag.as_deref().unwrap_or(""))
                        .arg(&r.value[..])
                        .arg(fw)
                        .arg(ttl);
                }
                Operation::Delete(r) => {
                    check_etag_syntax(r.etag.as_deref())?;
                    inv.arg("d")
                        .arg(r.etag.as_deref().unwrap_or(""))
                        .arg("")
                        .arg("0")
                        .arg("");
                }
            }
        }
        let mut conn = self.conn.get();
        self.bounded(inv.invoke_async::<i64>(&mut conn))
            .await
            .map(|_| ())
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

    async fn get(&self, req: &GetRequest) -> Result<Option<Item>, StateError> {
        let mut conn = self.conn.get();
        let mut p = redis::pipe();
        p.atomic()
            .cmd("HMGET")
            .arg(&req.key)
            .arg("data")
            .arg("version")
            .cmd("PTTL")
            .arg(&req.key);
        let (vals, pttl): (Vec<Value>, i64) = self.bounded(p.query_async(&mut conn)).await?;
        let mut it = vals.into_iter();
        Ok(match (it.next(), it.next()) {
            (Some(d), Some(v)) => item_from(d, v, pttl),
            _ => None,
        })
    }

    /// One round trip for all keys.
    async fn bulk_get(&self, reqs: &[GetRequest]) -> Result<Vec<BulkItem>, StateError> {
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.get();
        let mut p = redis::pipe();
        for r in reqs {
            p.cmd("HMGET")
                .arg(&r.key)
                .arg("data")
                .arg("version")
                .cmd("PTTL")
                .arg(&r.key);
        }
        let vals: Vec<Value> = self.bounded(p.query_async(&mut conn)).await?;
        let mut vals = vals.into_iter();
        Ok(reqs
            .iter()
            .map(|r| {
                let hm: Vec<Value> = vals
                    .next()
                    .and_then(|v| redis::from_redis_value(v).ok())
                    .unwrap_or_default();
                let pttl: i64 = vals
                    .next()
                    .and_then(|v| redis::from_redis_value(v).ok())
                    .unwrap_or(-2);
                let mut hm = hm.into_iter();
                let item = match (hm.next(), hm.next()) {
                    (Some(d), Some(v)) => item_from(d, v, pttl),
                    _ => None,
                };
                BulkItem::found(r.key.clone(), item)
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
