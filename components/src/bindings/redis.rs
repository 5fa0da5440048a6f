//! `bindings.redis`: an output binding on one Redis key per call (`key`
//! metadata), as daprd's: `create` (`SET`, with `ttlInSeconds` metadata
//! `EX`), `get`, `delete`, `increment` (`INCR`, TTL applied too).
//! Connection metadata is every Redis component's (`redis_wire/metadata.rs`).

use std::sync::Arc;

use async_trait::async_trait;

use super::{ops, Binding, BindingError, InvokeRequest, InvokeResponse};
use crate::build::{BuildContext, BuildError};
use crate::meta::Meta;
use crate::redis_wire::{Commands, Reply, Wire};

const INCREMENT: &str = "increment";

pub struct RedisBinding {
    wire: Wire,
}

pub fn build(
    c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn Binding>, BuildError> {
    let m = Meta::new(c);
    let endpoint = crate::redis_wire::endpoint(c)?;
    let limits = crate::redis_wire::limits(c)?;
    let wire = Wire::new(endpoint, limits).map_err(|e| m.error("enableTLS", e))?;
    Ok(Arc::new(RedisBinding { wire }))
}

fn failed(e: impl std::fmt::Display) -> BindingError {
    BindingError::Backend(format!("redis: {e}"))
}

impl RedisBinding {
    async fn call(&self, c: &Commands, idempotent: bool) -> Result<Vec<Reply>, BindingError> {
        let replies = self.wire.query(c, idempotent).await.map_err(failed)?;
        if let Some(Reply::Error(e)) = replies.iter().find(|r| matches!(r, Reply::Error(_))) {
            return Err(failed(e));
        }
        Ok(replies)
    }
}

fn ttl(req: &InvokeRequest) -> Result<Option<u64>, BindingError> {
    match req.metadata.get("ttlInSeconds").filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            BindingError::BadRequest(format!(
                "ttlInSeconds {v:?} is not a whole number of seconds"
            ))
        }),
    }
}

#[async_trait]
impl Binding for RedisBinding {
    async fn init(&self) -> Result<(), BindingError> {
        let mut c = Commands::with_capacity(16);
        c.command(1).arg("PING");
        self.call(&c, true).await.map(|_| ())
    }

    fn operations(&self) -> &[&'static str] {
        &[ops::CREATE, ops::GET, ops::DELETE, INCREMENT]
    }

    async fn invoke(&self, req: InvokeRequest) -> Result<Option<InvokeResponse>, BindingError> {
        let key = req
            .metadata
            .get("key")
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                BindingError::BadRequest("redis binding: missing key in request metadata".into())
            })?
            .clone();
        let ttl = ttl(&req)?;
        let mut c = Commands::with_capacity(64 + req.data.len());
        match req.operation.as_str() {
            ops::CREATE => {
                match ttl {
                    Some(t) => c
                        .command(5)
                        .arg("SET")
                        .arg(&key)
                        .arg(&req.data)
                        .arg("EX")
                        .arg(t.to_string()),
                    None => c.command(3).arg("SET").arg(&key).arg(&req.data),
                };
                self.call(&c, true).await?;
                Ok(None)
            }
            ops::GET => {
                c.command(2).arg("GET").arg(&key);
                match self.call(&c, true).await?.pop() {
                    Some(Reply::Bulk(data)) => Ok(Some(InvokeResponse {
                        data,
                        metadata: Default::default(),
                    })),
                    _ => Ok(None),
                }
            }
            ops::DELETE => {
                c.command(2).arg("DEL").arg(&key);
                self.call(&c, true).await?;
                Ok(None)
            }
            INCREMENT => {
                c.command(2).arg("INCR").arg(&key);
                if let Some(t) = ttl {
                    c.command(3).arg("EXPIRE").arg(&key).arg(t.to_string());
                }
                // Not idempotent: a resent INCR would count twice.
                self.call(&c, false).await?;
                Ok(None)
            }
            op => Err(BindingError::Unsupported(format!(
                "invalid operation type: {op}"
            ))),
        }
    }
}
