//! `lock.redis`: a lock is a Redis string holding its owner, taken with
//! `SET key owner NX PX expiry` and released by one script that deletes it
//! only when the owner matches (daprd's layout and answers, so daprd and
//! spar sidecars can share locks). Standalone Redis only, as daprd's store:
//! with replicas a lock could be lost in a fail-over.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{LockError, LockStore, UnlockStatus};
use crate::build::{BuildContext, BuildError};
use crate::meta::Meta;
use crate::redis_wire::{Commands, Limits, Reply, Wire};

/// -1: no such lock; -2: another owner's; else the number deleted.
const UNLOCK: &str = r#"
local v = redis.call("GET", KEYS[1])
if v == false then return -1 end
if v ~= ARGV[1] then return -2 end
return redis.call("DEL", KEYS[1])
"#;

pub struct RedisLock {
    wire: Wire,
    /// `UNLOCK`'s SHA-1, for `EVALSHA`.
    unlock_sha: String,
}

pub fn build(
    c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn LockStore>, BuildError> {
    let m = Meta::new(c);
    let endpoint = crate::redis_wire::endpoint(c)?;
    let limits = Limits {
        dial: m.duration("dialTimeout", Duration::from_secs(5))?,
        read: m.duration("readTimeout", Duration::from_secs(3))?,
        retries: m.int("maxRetries", 3usize)?,
        max_backoff: m.duration("maxRetryBackoff", Duration::from_secs(2))?,
    };
    let wire = Wire::new(endpoint, limits).map_err(|e| m.error("enableTLS", e))?;
    Ok(Arc::new(RedisLock {
        wire,
        unlock_sha: redis::Script::new(UNLOCK).get_hash().to_string(),
    }))
}

fn failed(e: impl std::fmt::Display) -> LockError {
    LockError::Backend(format!("redis: {e}"))
}

impl RedisLock {
    async fn call(&self, c: &Commands, idempotent: bool) -> Result<Reply, LockError> {
        let mut r = self.wire.query(c, idempotent).await.map_err(failed)?;
        match r.pop() {
            Some(Reply::Error(e)) if !e.starts_with("NOSCRIPT") => Err(failed(e)),
            Some(reply) => Ok(reply),
            None => Err(failed("no reply")),
        }
    }
}

/// `connected_slaves:N` from `INFO replication`.
fn replicas(info: &[u8]) -> Option<u64> {
    String::from_utf8_lossy(info)
        .lines()
        .find_map(|l| l.trim().strip_prefix("connected_slaves:")?.parse().ok())
}

#[async_trait]
impl LockStore for RedisLock {
    /// `PING`, then refuses a primary with replicas, as daprd's store does
    /// (a lock written to the primary may not reach the replica that takes
    /// over). A server that cannot answer `INFO` is let through.
    async fn init(&self) -> Result<(), LockError> {
        let mut c = Commands::with_capacity(64);
        c.command(1).arg("PING");
        c.command(2).arg("INFO").arg("replication");
        let r = self.wire.query(&c, true).await.map_err(failed)?;
        if let Some(Reply::Error(e)) = r.first() {
            return Err(failed(e));
        }
        if let Some(Reply::Bulk(info)) = r.get(1) {
            if replicas(info).is_some_and(|n| n > 0) {
                return Err(LockError::Backend("replication is not supported".into()));
            }
        }
        Ok(())
    }

    async fn try_lock(
        &self,
        resource: &str,
        owner: &str,
        expiry: Duration,
    ) -> Result<bool, LockError> {
        let ms = expiry.as_millis().max(1).to_string();
        let mut c = Commands::with_capacity(64 + resource.len() + owner.len());
        c.command(6)
            .arg("SET")
            .arg(resource)
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(&ms);
        // Not retried once sent: a SET that landed would make a second
        // attempt answer "held" to the lock's own taker.
        match self.call(&c, false).await? {
            Reply::Nil => Ok(false),
            Reply::Status(_) | Reply::Bulk(_) => Ok(true),
            other => Err(failed(format!("unexpected reply to SET: {other:?}"))),
        }
    }

    async fn unlock(&self, resource: &str, owner: &str) -> Result<UnlockStatus, LockError> {
        let script = |how: &str, what: &str| {
            let mut c = Commands::with_capacity(64 + what.len() + resource.len() + owner.len());
            c.command(5)
                .arg(how)
                .arg(what)
                .arg("1")
                .arg(resource)
                .arg(owner);
            c
        };
        let mut reply = self
            .call(&script("EVALSHA", &self.unlock_sha), false)
            .await?;
        if matches!(&reply, Reply::Error(e) if e.starts_with("NOSCRIPT")) {
            reply = self.call(&script("EVAL", UNLOCK), false).await?;
        }
        match reply {
            Reply::Int(n) if n >= 0 => Ok(UnlockStatus::Success),
            Reply::Int(-1) => Ok(UnlockStatus::LockDoesNotExist),
            Reply::Int(-2) => Ok(UnlockStatus::LockBelongsToOthers),
            Reply::Error(e) => Err(failed(e)),
            other => Err(failed(format!("unexpected reply to unlock: {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_replicas_from_info() {
        let info = b"# Replication\r\nrole:master\r\nconnected_slaves:2\r\n";
        assert_eq!(replicas(info), Some(2));
        assert_eq!(replicas(b"role:master\r\n"), None);
    }
}
