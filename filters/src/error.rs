//! Dapr's error model in one place: every failure the API can return, with
//! its `errorCode`, message, HTTP status and gRPC status code.

use spar_components::state::StateError;
use thiserror::Error;

/// gRPC status codes (fixed by the gRPC spec) so this crate needs no gRPC dependency.
pub mod grpc_code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const NOT_FOUND: i32 = 5;
    pub const ABORTED: i32 = 10;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const FAILED_PRECONDITION: i32 = 9;
    pub const UNIMPLEMENTED: i32 = 12;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

/// Which state operation failed; picks the Dapr error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateOp {
    Get,
    BulkGet,
    Save,
    Delete,
    BulkDelete,
    Transaction,
    Query,
}

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("invalid api token")]
    ApiTokenInvalid,
    #[error("missing api token in request metadata")]
    ApiTokenMissing,
    #[error("failed deserializing HTTP body: {0}")]
    MalformedRequest(String),
    #[error("request body exceeds the limit of {limit} bytes (--max-body-size)")]
    BodyTooLarge { limit: usize },
    #[error("method {0:?} is not found")]
    RouteNotFound(String),
    #[error("method {method} is not allowed for {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("dapr is not ready: {0}")]
    HealthNotReady(String),
    #[error("dapr outbound is not ready")]
    OutboundNotReady,
    #[error("dapr app-id does not match")]
    HealthAppIdNotMatch,
    #[error("state store is not configured")]
    StateStoresNotConfigured,
    #[error("state store {0} is not found")]
    StateStoreNotFound(String),
    #[error("input key/keyPrefix '{key}' can't contain '||'")]
    StateInvalidKey { key: String },
    #[error("{}", state_message(*op, store, key.as_deref(), source))]
    State {
        op: StateOp,
        store: String,
        key: Option<String>,
        source: StateError,
    },
    #[error("secret store is not configured")]
    SecretStoresNotConfigured,
    #[error("failed finding secret store with key {0}")]
    SecretStoreNotFound(String),
    #[error("access denied by policy to get {name:?} from {store:?}")]
    SecretPermissionDenied { name: String, store: String },
    #[error("failed getting secret with key {name} from secret store {store}: {reason}")]
    SecretGet {
        name: String,
        store: String,
        reason: String,
    },
    #[error("failed getting app id either from the URL path or the header dapr-app-id")]
    DirectInvokeNoAppId,
    #[error("fail to invoke, id: {app_id}, err: {reason}")]
    DirectInvoke { app_id: String, reason: String },
    /// The callee's `spec.accessControl` refused the caller.
    #[error(
        "fail to invoke, id: {app_id}, err: rpc error: code = PermissionDenied desc = {reason}"
    )]
    DirectInvokeDenied { app_id: String, reason: String },
    /// The call's deadline passed before the target answered.
    #[error(
        "fail to invoke, id: {app_id}, err: rpc error: code = DeadlineExceeded desc = {reason}"
    )]
    DirectInvokeTimeout { app_id: String, reason: String },
    #[error("app channel is not initialized")]
    AppChannelNotInitialized,
    #[error("pubsub is not configured")]
    PubSubNotConfigured,
    #[error("pubsub name is empty")]
    PubSubEmpty,
    #[error("pubsub {0} is not found")]
    PubSubNotFound(String),
    #[error("topic is empty in pubsub {0}")]
    TopicEmpty(String),
    #[error("topic {topic} is not allowed for app id {app_id}")]
    PubSubForbidden { topic: String, app_id: String },
    #[error("error when publishing to topic {topic} in pubsub {pubsub}: {reason}")]
    PubSubPublish {
        topic: String,
        pubsub: String,
        reason: String,
    },
    #[error("error when unmarshalling the request metadata: {0}")]
    PubSubRequestMetadata(String),
    #[error("error when wrapping the payload in a CloudEvent: {0}")]
    PubSubCloudEvent(String),
    #[error("error when reading the bulk publish request: {0}")]
    PubSubEventsSer(String),
    /// The transactional outbox could not publish its internal event.
    #[error("error while publishing outbox message: {reason}")]
    PubSubOutbox { app_id: String, reason: String },
    /// daprd's generic bad request (`invalid request: …`).
    #[error("invalid request: {0}")]
    BadRequest(String),
    #[error("crypto providers not configured")]
    CryptoProvidersNotConfigured,
    #[error("crypto provider {0} not found")]
    CryptoProviderNotFound(String),
    #[error("failed to retrieve key {name}: {reason}")]
    CryptoGetKey { name: String, reason: String },
    #[error("failed to perform operation: {0}")]
    Crypto(String),
    #[error("{0}")]
    MetadataSet(String),
    #[error("too many requests")]
    RateLimited,
    #[error("{0}")]
    Internal(String),
}

fn state_message(op: StateOp, store: &str, key: Option<&str>, e: &StateError) -> String {
    let key = key.unwrap_or_default();
    match (op, e) {
        (_, StateError::NotSupported(what)) => {
            format!("state store {store} doesn't support {what}")
        }
        (StateOp::Get, _) => format!("fail to get {key} from state store {store}: {e}"),
        (StateOp::BulkGet, _) => format!("failed getting bulk state from state store {store}: {e}"),
        (StateOp::Save, _) => format!("failed saving state in state store {store}: {e}"),
        (StateOp::Delete, _) => format!("failed deleting state with key {key}: {e}"),
        (StateOp::BulkDelete, _) => format!("failed deleting state in state store {store}: {e}"),
        (StateOp::Transaction, _) => format!("error while executing state transaction: {e}"),
        (StateOp::Query, _) => format!("state store {store} query failed: {e}"),
    }
}

impl ApiError {
    /// Dapr's `errorCode`.
    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            ApiTokenInvalid | ApiTokenMissing => "ERR_API_TOKEN_INVALID",
            MalformedRequest(_) | StateInvalidKey { .. } => "ERR_MALFORMED_REQUEST",
            BodyTooLarge { .. } => "ERR_BODY_TOO_LARGE",
            RouteNotFound(_) => "ERR_NOT_FOUND",
            MethodNotAllowed { .. } => "ERR_METHOD_NOT_ALLOWED",
            HealthNotReady(_) => "ERR_HEALTH_NOT_READY",
            OutboundNotReady => "ERR_OUTBOUND_HEALTH_NOT_READY",
            HealthAppIdNotMatch => "ERR_HEALTH_APPID_NOT_MATCH",
            StateStoresNotConfigured => "ERR_STATE_STORE_NOT_CONFIGURED",
            StateStoreNotFound(_) => "ERR_STATE_STORE_NOT_FOUND",
            State {
                source: StateError::NotSupported(_),
                ..
            } => "ERR_STATE_STORE_NOT_SUPPORTED",
            State { op, .. } => match op {
                StateOp::Get => "ERR_STATE_GET",
                StateOp::BulkGet => "ERR_STATE_BULK_GET",
                StateOp::Save => "ERR_STATE_SAVE",
                StateOp::Delete => "ERR_STATE_DELETE",
                StateOp::BulkDelete => "ERR_STATE_BULK_DELETE",
                StateOp::Transaction => "ERR_STATE_TRANSACTION",
                StateOp::Query => "ERR_STATE_QUERY",
            },
            SecretStoresNotConfigured => "ERR_SECRET_STORES_NOT_CONFIGURED",
            SecretStoreNotFound(_) => "ERR_SECRET_STORE_NOT_FOUND",
            SecretPermissionDenied { .. } => "ERR_PERMISSION_DENIED",
            SecretGet { .. } => "ERR_SECRET_GET",
            DirectInvokeNoAppId
            | DirectInvoke { .. }
            | DirectInvokeDenied { .. }
            | DirectInvokeTimeout { .. } => "ERR_DIRECT_INVOKE",
            AppChannelNotInitialized => "ERR_APP_CHANNEL_NIL",
            PubSubNotConfigured => "ERR_PUBSUB_NOT_CONFIGURED",
            PubSubEmpty => "ERR_PUBSUB_EMPTY",
            PubSubNotFound(_) => "ERR_PUBSUB_NOT_FOUND",
            TopicEmpty(_) => "ERR_TOPIC_NAME_EMPTY",
            PubSubForbidden { .. } => "ERR_PUBSUB_FORBIDDEN",
            PubSubPublish { .. } => "ERR_PUBSUB_PUBLISH_MESSAGE",
            PubSubRequestMetadata(_) => "ERR_PUBSUB_REQUEST_METADATA",
            PubSubCloudEvent(_) => "ERR_PUBSUB_CLOUD_EVENTS_SER",
            PubSubEventsSer(_) => "ERR_PUBSUB_EVENTS_SER",
            PubSubOutbox { .. } => "ERR_PUBLISH_OUTBOX",
            BadRequest(_) => "ERR_BAD_REQUEST",
            CryptoProvidersNotConfigured => "ERR_CRYPTO_PROVIDERS_NOT_CONFIGURED",
            CryptoProviderNotFound(_) => "ERR_CRYPTO_PROVIDER_NOT_FOUND",
            CryptoGetKey { .. } => "ERR_CRYPTO_KEY",
            Crypto(_) => "ERR_CRYPTO",
            MetadataSet(_) => "ERR_METADATA_SET",
            RateLimited => "ERR_TOO_MANY_REQUESTS",
            Internal(_) => "ERR_INTERNAL",
        }
    }

    pub fn http_status(&self) -> u16 {
        use ApiError::*;
        match self {
            ApiTokenInvalid | ApiTokenMissing => 401,
            MalformedRequest(_) | StateInvalidKey { .. } | MetadataSet(_) => 400,
            BodyTooLarge { .. } => 413,
            RouteNotFound(_) => 404,
            MethodNotAllowed { .. } => 405,
            HealthNotReady(_) | OutboundNotReady | HealthAppIdNotMatch => 500,
            StateStoresNotConfigured => 500,
            StateStoreNotFound(_) => 400,
            State { source, .. } => match source {
                StateError::EtagMismatch(_) => 409,
                StateError::EtagInvalid(_) | StateError::InvalidRequest(_) => 400,
                StateError::NotSupported(_) | StateError::Backend(_) => 500,
            },
            SecretStoresNotConfigured | SecretGet { .. } => 500,
            // daprd answers an unknown secret store with 401; kept for clients that check it.
            SecretStoreNotFound(_) => 401,
            SecretPermissionDenied { .. } => 403,
            DirectInvokeNoAppId => 404,
            DirectInvoke { .. } | AppChannelNotInitialized => 500,
            DirectInvokeDenied { .. } => 403,
            DirectInvokeTimeout { .. } => 504,
            PubSubNotConfigured => 400,
            PubSubEmpty | PubSubNotFound(_) | TopicEmpty(_) => 404,
            PubSubForbidden { .. } => 403,
            PubSubPublish { .. } | PubSubOutbox { .. } => 500,
            PubSubRequestMetadata(_) | PubSubCloudEvent(_) | PubSubEventsSer(_) => 400,
            BadRequest(_) | CryptoProviderNotFound(_) => 400,
            CryptoProvidersNotConfigured | CryptoGetKey { .. } | Crypto(_) => 500,
            RateLimited => 429,
            Internal(_) => 500,
        }
    }

    pub fn grpc_code(&self) -> i32 {
        use grpc_code::*;
        use ApiError::*;
        match self {
            ApiTokenInvalid | ApiTokenMissing => UNAUTHENTICATED,
            MalformedRequest(_) | StateInvalidKey { .. } | MetadataSet(_) => INVALID_ARGUMENT,
            BodyTooLarge { .. } => RESOURCE_EXHAUSTED,
            RouteNotFound(_) => NOT_FOUND,
            MethodNotAllowed { .. } => UNIMPLEMENTED,
            HealthNotReady(_) | OutboundNotReady | HealthAppIdNotMatch => INTERNAL,
            StateStoresNotConfigured => FAILED_PRECONDITION,
            StateStoreNotFound(_) => INVALID_ARGUMENT,
            State { source, .. } => match source {
                StateError::EtagMismatch(_) => ABORTED,
                StateError::EtagInvalid(_) | StateError::InvalidRequest(_) => INVALID_ARGUMENT,
                StateError::NotSupported(_) => UNIMPLEMENTED,
                StateError::Backend(_) => INTERNAL,
            },
            SecretStoresNotConfigured => FAILED_PRECONDITION,
            SecretStoreNotFound(_) => INVALID_ARGUMENT,
            SecretPermissionDenied { .. } => PERMISSION_DENIED,
            SecretGet { .. } => INTERNAL,
            DirectInvokeNoAppId => NOT_FOUND,
            DirectInvoke { .. } => INTERNAL,
            DirectInvokeDenied { .. } => PERMISSION_DENIED,
            DirectInvokeTimeout { .. } => DEADLINE_EXCEEDED,
            AppChannelNotInitialized => INTERNAL,
            PubSubNotConfigured => FAILED_PRECONDITION,
            PubSubEmpty | PubSubNotFound(_) | TopicEmpty(_) => INVALID_ARGUMENT,
            PubSubForbidden { .. } => PERMISSION_DENIED,
            PubSubPublish { .. } | PubSubOutbox { .. } => INTERNAL,
            PubSubRequestMetadata(_) | PubSubCloudEvent(_) | PubSubEventsSer(_) => INVALID_ARGUMENT,
            BadRequest(_) | CryptoProviderNotFound(_) => INVALID_ARGUMENT,
            CryptoProvidersNotConfigured | CryptoGetKey { .. } | Crypto(_) => INTERNAL,
            RateLimited => RESOURCE_EXHAUSTED,
            Internal(_) => INTERNAL,
        }
    }

    /// Dapr's HTTP error body: `{"errorCode": "...", "message": "..."}`.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "errorCode": self.code(),
            "message": self.to_string(),
        }))
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_errors_map_like_dapr() {
        let e = ApiError::State {
            op: StateOp::Save,
            store: "s".into(),
            key: None,
            source: StateError::EtagMismatch("x".into()),
        };
        assert_eq!((e.code(), e.http_status()), ("ERR_STATE_SAVE", 409));
        let e = ApiError::State {
            op: StateOp::Delete,
            store: "s".into(),
            key: Some("k".into()),
            source: StateError::EtagInvalid("x".into()),
        };
        assert_eq!((e.code(), e.http_status()), ("ERR_STATE_DELETE", 400));
        assert!(e.to_string().contains("failed deleting state with key k"));
    }

    #[test]
    fn not_supported_has_its_own_code() {
        let e = ApiError::State {
            op: StateOp::Query,
            store: "s".into(),
            key: None,
            source: StateError::NotSupported("query"),
        };
        assert_eq!(e.code(), "ERR_STATE_STORE_NOT_SUPPORTED");
        assert_eq!(e.http_status(), 500);
    }

    #[test]
    fn json_body_has_dapr_fields() {
        let v: serde_json::Value =
            serde_json::from_slice(&ApiError::StateStoreNotFound("x".into()).to_json()).unwrap();
        assert_eq!(v["errorCode"], "ERR_STATE_STORE_NOT_FOUND");
        assert_eq!(v["message"], "state store x is not found");
    }
}
