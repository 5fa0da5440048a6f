//! HTTP codec of the distributed lock block: `POST /v1.0-alpha1/lock/{store}`
//! and `/unlock/{store}` bodies in, `{"success"}` / `{"status"}` out, as
//! daprd writes them (unset fields included, the status as a number).

use serde::Deserialize;
use serde_json::json;
use spar_filters::handlers::lock::{LockRequest, LockResponse};
use spar_filters::{ApiError, Request};

use super::protojson;

#[derive(Deserialize, Default)]
#[serde(default)]
struct LockJson {
    #[serde(
        rename = "resourceId",
        alias = "resource_id",
        deserialize_with = "protojson::string"
    )]
    resource_id: String,
    #[serde(
        rename = "lockOwner",
        alias = "lock_owner",
        deserialize_with = "protojson::string"
    )]
    lock_owner: String,
    #[serde(
        rename = "expiryInSeconds",
        alias = "expiry_in_seconds",
        deserialize_with = "protojson::int32"
    )]
    expiry_in_seconds: i32,
}

pub fn try_lock(store: String, body: &[u8]) -> Result<Request, ApiError> {
    let j: LockJson = protojson::parse(body)?;
    Ok(Request::Lock(LockRequest::TryLock {
        store,
        resource_id: j.resource_id,
        owner: j.lock_owner,
        expiry_in_seconds: j.expiry_in_seconds,
    }))
}

pub fn unlock(store: String, body: &[u8]) -> Result<Request, ApiError> {
    let j: LockJson = protojson::parse(body)?;
    Ok(Request::Lock(LockRequest::Unlock {
        store,
        resource_id: j.resource_id,
        owner: j.lock_owner,
    }))
}

pub fn encode(r: &LockResponse) -> serde_json::Value {
    match r {
        LockResponse::TryLock { success } => json!({ "success": success }),
        LockResponse::Unlock { status } => json!({ "status": *status as i32 }),
    }
}
