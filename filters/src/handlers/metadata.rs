//! `GET/PUT /v1.0/metadata` and gRPC `GetMetadata`/`SetMetadata`.

use std::collections::BTreeMap;

use crate::runtime::{AppConnection, ComponentInfo};
use crate::{ApiError, ApiResult, Response, Runtime};

#[derive(Debug)]
pub enum MetadataRequest {
    Get,
    Set { key: String, value: String },
}

/// What the metadata API reports; each front end encodes it its own way.
#[derive(Debug, Clone)]
pub struct MetadataSnapshot {
    pub id: String,
    pub runtime_version: String,
    pub enabled_features: Vec<String>,
    pub components: Vec<ComponentInfo>,
    pub extended: BTreeMap<String, String>,
    pub app_connection: Option<AppConnection>,
    pub http_endpoints: Vec<String>,
    pub subscriptions: Vec<crate::runtime::SubscriptionInfo>,
}

pub fn handle(rt: &Runtime, req: MetadataRequest) -> ApiResult {
    match req {
        MetadataRequest::Get => Ok(Response::Metadata(Box::new(snapshot(rt)))),
        MetadataRequest::Set { key, value } => {
            if key.is_empty() {
                return Err(ApiError::MetadataSet(
                    "metadata key must not be empty".into(),
                ));
            }
            rt.set_attribute(key, value);
            Ok(Response::Empty)
        }
    }
}

pub fn snapshot(rt: &Runtime) -> MetadataSnapshot {
    let live = rt.live();
    let mut extended = rt.attributes();
    extended.insert("daprRuntimeVersion".into(), rt.runtime_version.into());
    extended.insert("runtime".into(), "spar".into());
    if rt.app.is_some() {
        extended.insert("appHealth".into(), rt.app_health().as_str().into());
    }
    for (name, why) in &live.failed_components {
        extended.insert(format!("componentError.{name}"), why.clone());
    }
    MetadataSnapshot {
        id: rt.app_id.clone(),
        runtime_version: rt.runtime_version.into(),
        enabled_features: rt.enabled_features.clone(),
        components: live.components.clone(),
        extended,
        app_connection: rt.app.clone(),
        subscriptions: rt.subscriptions(),
        http_endpoints: {
            let mut n: Vec<String> = live.endpoints.names().cloned().collect();
            n.sort();
            n
        },
    }
}
