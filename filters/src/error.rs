//! Dapr's error model in one place: every failure the API can return, with
//! its `errorCode`, message, HTTP status, gRPC status code and the rich
//! details (`google.rpc.ErrorInfo`, `ResourceInfo`, …) daprd attaches.

use std::collections::BTreeMap;

use spar_components::state::StateError;
use thiserror::Error;

use crate::context::Protocol;
pub use crate::error_details::Detail;

/// Request metadata carried by an error for its `ErrorInfo`.
pub type ErrorMetadata = BTreeMap<String, String>;

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
    /// An HTTP/1 message whose head or framing RFC 9112 says to refuse;
    /// the connection closes after the answer.
    #[error("malformed HTTP request: {0}")]
    BadHttpFraming(String),
    #[error("request body exceeds the limit of {limit} bytes (--max-body-size)")]
    BodyTooLarge { limit: usize },
    #[error("request headers exceed the limit of {limit} bytes (--read-buffer-size)")]
    HeadersTooLarge { limit: usize },
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
    #[error("state store {store} is not configured")]
    StateStoresNotConfigured { store: String, app_id: String },
    #[error("state store {store} is not found")]
    StateStoreNotFound { store: String, app_id: String },
    #[error("input key/keyPrefix '{key}' can't contain '||'")]
    StateInvalidKey { store: String, key: String },
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
    #[error("pubsub {pubsub} is not configured")]
    PubSubNotConfigured {
        pubsub: String,
        metadata: ErrorMetadata,
    },
    #[error("pubsub name is empty")]
    PubSubEmpty { metadata: ErrorMetadata },
    #[error("pubsub {pubsub} is not found")]
    PubSubNotFound {
        pubsub: String,
        metadata: ErrorMetadata,
    },
    #[error("topic is empty in pubsub {pubsub}")]
    TopicEmpty {
        pubsub: String,
        metadata: ErrorMetadata,
    },
    #[error("topic {topic} is not allowed for app id {app_id}")]
    PubSubForbidden {
        pubsub: String,
        topic: String,
        app_id: String,
    },
    #[error("error when publishing to topic {topic} in pubsub {pubsub}: {reason}")]
    PubSubPublish {
        topic: String,
        pubsub: String,
        reason: String,
    },
    #[error("error when unmarshalling the request metadata: {reason}")]
    PubSubRequestMetadata {
        pubsub: String,
        metadata: ErrorMetadata,
        reason: String,
    },
    #[error("error when wrapping the payload in a CloudEvent: {reason}")]
    PubSubCloudEvent {
        pubsub: String,
        app_id: String,
        reason: String,
    },
    #[error("{}", events_ser_message(*kind, pubsub, topic, reason))]
    PubSubEventsSer {
        kind: EventsSer,
        pubsub: String,
        topic: String,
        app_id: String,
        reason: String,
    },
    /// The transactional outbox could not publish its internal event.
    #[error("error while publishing outbox message: {reason}")]
    PubSubOutbox { app_id: String, reason: String },
    #[error("configuration stores not configured")]
    ConfigurationStoresNotConfigured,
    #[error("configuration store {0} not found")]
    ConfigurationStoreNotFound(String),
    #[error(
        "failed to get {} from Configuration store {store}: {reason}",
        go_list(keys)
    )]
    ConfigurationGet {
        keys: Vec<String>,
        store: String,
        reason: String,
    },
    #[error(
        "failed to subscribe {} from Configuration store {store}: {reason}",
        go_list(keys)
    )]
    ConfigurationSubscribe {
        keys: Vec<String>,
        store: String,
        reason: String,
    },
    #[error("failed to unsubscribe to configuration request {id}: {reason}")]
    ConfigurationUnsubscribe { id: String, reason: String },
    /// An HTTP subscription needs an app to deliver to.
    #[error("app channel is not initialized. cannot subscribe to configuration updates")]
    ConfigurationNoApp,
    #[error("lock store is not configured")]
    LockStoresNotConfigured,
    #[error("lock store {0} not found")]
    LockStoreNotFound(String),
    #[error("ResourceId is empty in lock store {0}")]
    LockResourceIdEmpty(String),
    #[error("LockOwner is empty in lock store {0}")]
    LockOwnerEmpty(String),
    #[error("ExpiryInSeconds is not positive in lock store {0}")]
    LockExpiryNotPositive(String),
    #[error("failed to try acquiring lock: {0}")]
    TryLock(String),
    #[error("failed to release lock: {0}")]
    Unlock(String),
    #[error("failed finding conversation component {0}")]
    ConversationNotFound(String),
    #[error("failed conversing with component {name}: invalid params: {reason}")]
    ConversationInvalidParams { name: String, reason: String },
    #[error("failed conversing with component {name}: {reason}")]
    ConversationInvoke { name: String, reason: String },
    #[error("failed conversing with component {0}: missing inputs in request")]
    ConversationMissingInputs(String),
    /// daprd's generic bad request (`invalid request: …`).
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// A Jobs API request without a required field (daprd's reason code).
    #[error("{field} is empty")]
    JobEmpty {
        field: &'static str,
        reason: &'static str,
        app_id: String,
        namespace: String,
    },
    #[error("Set the job name in the url only")]
    JobNameInBody { app_id: String },
    /// The scheduler refused or could not be reached.
    #[error("{}", job_message(*op, source))]
    Scheduler {
        op: crate::handlers::jobs::JobOp,
        app_id: String,
        namespace: String,
        source: crate::handlers::jobs::SchedulerError,
    },
    #[error("crypto providers not configured")]
    CryptoProvidersNotConfigured,
    /// Every output binding failure (unknown binding, unsupported or
    /// missing operation, component error), as daprd: one code, 500.
    #[error("error invoking output binding {name}: {reason}")]
    InvokeOutputBinding { name: String, reason: String },
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

/// Which step of a bulk publish failed on its entries (daprd's three
/// `ERR_PUBSUB_EVENTS_SER` reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventsSer {
    /// The body is not a JSON array of entries.
    Unmarshal,
    /// An entry's id is missing or repeated.
    MarshalEvents,
    /// An entry's event could not be made into bytes or an envelope.
    MarshalEnvelope,
}

fn events_ser_message(kind: EventsSer, pubsub: &str, topic: &str, reason: &str) -> String {
    match kind {
        EventsSer::Unmarshal => {
            format!("error when unmarshaling the request for topic {topic} pubsub {pubsub}: {reason}")
        }
        EventsSer::MarshalEvents => format!(
            "error marshaling events to bytes for topic {topic} pubsub {pubsub}. error: {reason}"
        ),
        EventsSer::MarshalEnvelope => format!(
            "error when marshalling cloud event envelope for topic {topic} pubsub {pubsub}: {reason}"
        ),
    }
}

/// A list as Go's `%s` prints a `[]string`: `[a b]`.
fn go_list(keys: &[String]) -> String {
    format!("[{}]", keys.join(" "))
}

fn state_message(op: StateOp, store: &str, key: Option<&str>, e: &StateError) -> String {
    let key = key.unwrap_or_default();
    match (op, e) {
        (StateOp::Query, StateError::NotSupported(_)) => {
            "state store does not support querying".to_string()
        }
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

fn job_message(
    op: crate::handlers::jobs::JobOp,
    e: &crate::handlers::jobs::SchedulerError,
) -> String {
    use crate::handlers::jobs::JobOp;
    let what = match op {
        JobOp::Schedule => "schedule job",
        JobOp::Get => "get job",
        JobOp::Delete => "delete job",
        JobOp::List => "list jobs",
        JobOp::DeleteByPrefix => "delete jobs by prefix",
    };
    format!("failed to {what} due to: {e}")
}

fn job_reason(op: crate::handlers::jobs::JobOp) -> &'static str {
    use crate::handlers::jobs::JobOp;
    match op {
        JobOp::Schedule => "DAPR_SCHEDULER_SCHEDULE_JOB",
        JobOp::Get => "DAPR_SCHEDULER_GET_JOB",
        JobOp::Delete | JobOp::DeleteByPrefix => "DAPR_SCHEDULER_DELETE_JOB",
        JobOp::List => "DAPR_SCHEDULER_LIST_JOBS",
    }
}

/// daprd passes the scheduler's code through for a schedule (Unknown as
/// Internal) and answers Internal for the other operations.
fn job_grpc_code(op: crate::handlers::jobs::JobOp, code: i32) -> i32 {
    match (op, code) {
        (crate::handlers::jobs::JobOp::Schedule, c) if c != 2 && c != 0 => c,
        _ => grpc_code::INTERNAL,
    }
}

/// grpc-gateway's HTTP status for a gRPC code, as daprd maps them.
fn http_of_grpc(code: i32) -> u16 {
    match code {
        1 => 408,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

impl ApiError {
    /// Dapr's `errorCode`.
    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            ApiTokenInvalid | ApiTokenMissing => "ERR_API_TOKEN_INVALID",
            MalformedRequest(_) | StateInvalidKey { .. } | BadHttpFraming(_) => {
                "ERR_MALFORMED_REQUEST"
            }
            BodyTooLarge { .. } => "ERR_BODY_TOO_LARGE",
            HeadersTooLarge { .. } => "ERR_HEADERS_TOO_LARGE",
            RouteNotFound(_) => "ERR_NOT_FOUND",
            MethodNotAllowed { .. } => "ERR_METHOD_NOT_ALLOWED",
            HealthNotReady(_) => "ERR_HEALTH_NOT_READY",
            OutboundNotReady => "ERR_OUTBOUND_HEALTH_NOT_READY",
            HealthAppIdNotMatch => "ERR_HEALTH_APPID_NOT_MATCH",
            StateStoresNotConfigured { .. } => "ERR_STATE_STORE_NOT_CONFIGURED",
            StateStoreNotFound { .. } => "ERR_STATE_STORE_NOT_FOUND",
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
            PubSubNotConfigured { .. } => "ERR_PUBSUB_NOT_CONFIGURED",
            PubSubEmpty { .. } => "ERR_PUBSUB_EMPTY",
            PubSubNotFound { .. } => "ERR_PUBSUB_NOT_FOUND",
            TopicEmpty { .. } => "ERR_TOPIC_NAME_EMPTY",
            PubSubForbidden { .. } => "ERR_PUBSUB_FORBIDDEN",
            PubSubPublish { .. } => "ERR_PUBSUB_PUBLISH_MESSAGE",
            PubSubRequestMetadata { .. } => "ERR_PUBSUB_REQUEST_METADATA",
            PubSubCloudEvent { .. } => "ERR_PUBSUB_CLOUD_EVENTS_SER",
            PubSubEventsSer { .. } => "ERR_PUBSUB_EVENTS_SER",
            PubSubOutbox { .. } => "ERR_PUBLISH_OUTBOX",
            ConfigurationStoresNotConfigured => "ERR_CONFIGURATION_STORE_NOT_CONFIGURED",
            ConfigurationStoreNotFound(_) => "ERR_CONFIGURATION_STORE_NOT_FOUND",
            ConfigurationGet { .. } => "ERR_CONFIGURATION_GET",
            ConfigurationSubscribe { .. } => "ERR_CONFIGURATION_SUBSCRIBE",
            ConfigurationUnsubscribe { .. } => "ERR_CONFIGURATION_UNSUBSCRIBE",
            ConfigurationNoApp => "ERR_APP_CHANNEL_NIL",
            LockStoresNotConfigured => "ERR_LOCK_STORE_NOT_CONFIGURED",
            LockStoreNotFound(_) => "ERR_LOCK_STORE_NOT_FOUND",
            LockResourceIdEmpty(_) | LockOwnerEmpty(_) | LockExpiryNotPositive(_) => {
                "ERR_MALFORMED_REQUEST"
            }
            TryLock(_) => "ERR_TRY_LOCK",
            Unlock(_) => "ERR_UNLOCK",
            ConversationNotFound(_) => "ERR_CONVERSATION_NOT_FOUND",
            ConversationInvalidParams { .. } => "ERR_CONVERSATION_INVALID_PARMS",
            ConversationInvoke { .. } => "ERR_CONVERSATION_INVOKE",
            ConversationMissingInputs(_) => "ERR_CONVERSATION_MISSING_INPUTS",
            BadRequest(_) => "ERR_BAD_REQUEST",
            // daprd's errorCode for these is the ErrorInfo reason.
            JobEmpty { reason, .. } => reason,
            JobNameInBody { .. } => "DAPR_SCHEDULER_JOB_NAME",
            Scheduler { op, .. } => job_reason(*op),
            CryptoProvidersNotConfigured => "ERR_CRYPTO_PROVIDERS_NOT_CONFIGURED",
            CryptoProviderNotFound(_) => "ERR_CRYPTO_PROVIDER_NOT_FOUND",
            CryptoGetKey { .. } => "ERR_CRYPTO_KEY",
            InvokeOutputBinding { .. } => "ERR_INVOKE_OUTPUT_BINDING",
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
            BadHttpFraming(_) => 400,
            BodyTooLarge { .. } => 413,
            HeadersTooLarge { .. } => 431,
            RouteNotFound(_) => 404,
            MethodNotAllowed { .. } => 405,
            HealthNotReady(_) | OutboundNotReady | HealthAppIdNotMatch => 500,
            StateStoresNotConfigured { .. } => 500,
            StateStoreNotFound { .. } => 400,
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
            PubSubNotConfigured { .. } => 400,
            PubSubEmpty { .. } | PubSubNotFound { .. } | TopicEmpty { .. } => 404,
            PubSubForbidden { .. } => 403,
            PubSubPublish { .. } | PubSubOutbox { .. } => 500,
            PubSubRequestMetadata { .. } | PubSubCloudEvent { .. } | PubSubEventsSer { .. } => 400,
            // daprd: 500 for all but an unknown store (400).
            ConfigurationStoreNotFound(_) => 400,
            ConfigurationStoresNotConfigured
            | ConfigurationGet { .. }
            | ConfigurationSubscribe { .. }
            | ConfigurationUnsubscribe { .. }
            | ConfigurationNoApp => 500,
            LockStoresNotConfigured | TryLock(_) | Unlock(_) => 500,
            LockStoreNotFound(_)
            | LockResourceIdEmpty(_)
            | LockOwnerEmpty(_)
            | LockExpiryNotPositive(_) => 400,
            ConversationNotFound(_)
            | ConversationInvalidParams { .. }
            | ConversationMissingInputs(_) => 400,
            ConversationInvoke { .. } => 500,
            BadRequest(_) | CryptoProviderNotFound(_) => 400,
            CryptoProvidersNotConfigured | CryptoGetKey { .. } | Crypto(_) => 500,
            InvokeOutputBinding { .. } => 500,
            JobEmpty { .. } | JobNameInBody { .. } => 400,
            Scheduler { op, source, .. } => http_of_grpc(job_grpc_code(*op, source.code)),
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
            BadHttpFraming(_) => INVALID_ARGUMENT,
            BodyTooLarge { .. } | HeadersTooLarge { .. } => RESOURCE_EXHAUSTED,
            RouteNotFound(_) => NOT_FOUND,
            MethodNotAllowed { .. } => UNIMPLEMENTED,
            HealthNotReady(_) | OutboundNotReady | HealthAppIdNotMatch => INTERNAL,
            StateStoresNotConfigured { .. } => FAILED_PRECONDITION,
            StateStoreNotFound { .. } => INVALID_ARGUMENT,
            State { op, source, .. } => match source {
                StateError::EtagMismatch(_) => ABORTED,
                StateError::EtagInvalid(_) | StateError::InvalidRequest(_) => INVALID_ARGUMENT,
                // daprd's QueryUnsupported is Internal; TransactionsNotSupported Unimplemented.
                StateError::NotSupported(_) if *op == StateOp::Query => INTERNAL,
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
            PubSubNotConfigured { .. } => FAILED_PRECONDITION,
            PubSubEmpty { .. } | PubSubNotFound { .. } | TopicEmpty { .. } => INVALID_ARGUMENT,
            PubSubForbidden { .. } => PERMISSION_DENIED,
            PubSubPublish { .. } | PubSubOutbox { .. } => INTERNAL,
            PubSubRequestMetadata { .. } | PubSubCloudEvent { .. } | PubSubEventsSer { .. } => {
                INVALID_ARGUMENT
            }
            ConfigurationStoresNotConfigured => FAILED_PRECONDITION,
            // daprd answers a failed subscribe with InvalidArgument too.
            ConfigurationStoreNotFound(_) | ConfigurationSubscribe { .. } => INVALID_ARGUMENT,
            ConfigurationGet { .. } | ConfigurationUnsubscribe { .. } | ConfigurationNoApp => {
                INTERNAL
            }
            LockStoresNotConfigured => FAILED_PRECONDITION,
            LockStoreNotFound(_)
            | LockResourceIdEmpty(_)
            | LockOwnerEmpty(_)
            | LockExpiryNotPositive(_) => INVALID_ARGUMENT,
            TryLock(_) | Unlock(_) => INTERNAL,
            ConversationNotFound(_)
            | ConversationInvalidParams { .. }
            | ConversationMissingInputs(_) => INVALID_ARGUMENT,
            ConversationInvoke { .. } => INTERNAL,
            BadRequest(_) | CryptoProviderNotFound(_) => INVALID_ARGUMENT,
            CryptoProvidersNotConfigured | CryptoGetKey { .. } | Crypto(_) => INTERNAL,
            InvokeOutputBinding { .. } => INTERNAL,
            JobEmpty { .. } | JobNameInBody { .. } => INVALID_ARGUMENT,
            Scheduler { op, source, .. } => job_grpc_code(*op, source.code),
            RateLimited => RESOURCE_EXHAUSTED,
            Internal(_) => INTERNAL,
        }
    }

    /// The rich details daprd attaches to this error, in daprd's order, for
    /// the errors daprd builds with dapr/kit's builder (`pkg/api/errors`);
    /// empty for the plain ones (secrets, invocation, health…). A few differ
    /// by front end as daprd's do: the HTTP state-store lookup adds the app
    /// id, the gRPC state calls wrap store failures in an `ErrorInfo`.
    pub fn details(&self, proto: Protocol) -> Vec<Detail> {
        use ApiError::*;
        let http = proto == Protocol::Http;
        match self {
            StateStoresNotConfigured { app_id, .. } => {
                vec![info("DAPR_STATE_NOT_CONFIGURED", app_meta(http, app_id))]
            }
            StateStoreNotFound { app_id, .. } => {
                vec![info("DAPR_STATE_NOT_FOUND", app_meta(http, app_id))]
            }
            StateInvalidKey { store, key } => vec![
                Detail::BadRequest {
                    field: key.clone(),
                    description: self.to_string(),
                },
                resource("state", store, String::new()),
                info("DAPR_STATE_ILLEGAL_KEY", None),
            ],
            State {
                op,
                store,
                source: StateError::NotSupported(_),
                ..
            } => match op {
                StateOp::Transaction => vec![
                    Detail::Help {
                        url: "https://docs.dapr.io/reference/components-reference/supported-state-stores/",
                        description: "Check the list of state stores and the features they support",
                    },
                    resource("state", store, String::new()),
                    info("DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED", None),
                ],
                StateOp::Query => vec![
                    resource("state", store, String::new()),
                    info("DAPR_STATE_QUERYING_NOT_SUPPORTED", None),
                ],
                _ => Vec::new(),
            },
            State {
                op: StateOp::Query,
                store,
                ..
            } => vec![
                resource("state", store, String::new()),
                info("DAPR_STATE_QUERY_FAILED", None),
            ],
            // daprd's gRPC state calls (not bulk get) wrap a store failure
            // with its error code as the reason; its HTTP ones add nothing.
            State { op, .. } if !http && *op != StateOp::BulkGet => vec![info(self.code(), None)],
            // daprd's gRPC InvokeBinding error carries an ErrorInfo with
            // the code; its HTTP one has no details.
            InvokeOutputBinding { .. } if !http => vec![info(self.code(), None)],
            PubSubNotConfigured { metadata, .. } => vec![info(
                "DAPR_PUBSUB_NOT_CONFIGURED",
                http.then(|| metadata.clone()),
            )],
            PubSubNotFound { metadata, .. } => vec![info(
                "DAPR_PUBSUB_NOT_FOUND",
                http.then(|| metadata.clone()),
            )],
            PubSubEmpty { metadata } => vec![
                resource("pubsub", "", self.to_string()),
                info("DAPR_PUBSUB_NAME_EMPTY", Some(metadata.clone())),
            ],
            TopicEmpty { pubsub, metadata } => vec![
                resource("pubsub", pubsub, self.to_string()),
                info("DAPR_PUBSUB_TOPIC_NAME_EMPTY", Some(metadata.clone())),
            ],
            PubSubForbidden { pubsub, topic, .. } => vec![
                resource("pubsub", pubsub, self.to_string()),
                info(
                    "DAPR_PUBSUB_FORBIDDEN",
                    Some(meta([("topic", topic), ("error", &self.to_string())])),
                ),
            ],
            PubSubPublish {
                topic,
                pubsub,
                reason,
            } => vec![
                resource("pubsub", pubsub, self.to_string()),
                info(
                    "DAPR_PUBSUB_PUBLISH_MESSAGE",
                    Some(meta([("topic", topic), ("error", reason)])),
                ),
            ],
            PubSubRequestMetadata {
                pubsub, metadata, ..
            } => vec![
                resource("pubsub", pubsub, self.to_string()),
                info(
                    "DAPR_PUBSUB_METADATA_DESERIALIZATION",
                    Some(metadata.clone()),
                ),
            ],
            PubSubCloudEvent {
                pubsub,
                app_id,
                reason,
            } => vec![
                resource("pubsub", pubsub, self.to_string()),
                info(
                    "DAPR_PUBSUB_CLOUD_EVENT_CREATION",
                    Some(meta([("appID", app_id), ("error", reason)])),
                ),
            ],
            PubSubEventsSer {
                kind,
                pubsub,
                app_id,
                reason,
                ..
            } => {
                let (why, md) = match kind {
                    // daprd passes no error into this one's metadata.
                    EventsSer::Unmarshal => ("DAPR_PUBSUB_UNMARSHAL_EVENTS", meta([("appID", app_id)])),
                    EventsSer::MarshalEvents => (
                        "DAPR_PUBSUB_MARSHAL_EVENTS",
                        meta([("appID", app_id), ("error", reason)]),
                    ),
                    EventsSer::MarshalEnvelope => (
                        "DAPR_PUBSUB_MARSHAL_ENVELOPE",
                        meta([("appID", app_id), ("error", reason)]),
                    ),
                };
                vec![
                    resource("pubsub", pubsub, self.to_string()),
                    info(why, Some(md)),
                ]
            }
            PubSubOutbox { app_id, reason } => vec![info(
                "DAPR_PUBSUB_OUTBOX",
                Some(meta([("appID", app_id), ("error", reason)])),
            )],
            JobEmpty {
                reason,
                app_id,
                namespace,
                ..
            } => vec![info(
                reason,
                Some(meta([("appID", app_id), ("namespace", namespace)])),
            )],
            JobNameInBody { app_id } => vec![info(
                "DAPR_SCHEDULER_JOB_NAME",
                Some(meta([("appID", app_id)])),
            )],
            Scheduler {
                op,
                app_id,
                namespace,
                ..
            } => vec![info(
                job_reason(*op),
                Some(meta([("appID", app_id), ("namespace", namespace)])),
            )],
            _ => Vec::new(),
        }
    }

    /// Dapr's HTTP error body: `{"errorCode": "...", "message": "..."}`,
    /// plus `details` for the errors daprd enriches.
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct Body {
            #[serde(rename = "errorCode")]
            error_code: &'static str,
            message: String,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            details: Vec<serde_json::Value>,
        }
        serde_json::to_vec(&Body {
            error_code: self.code(),
            message: self.to_string(),
            details: self
                .details(Protocol::Http)
                .iter()
                .map(Detail::to_json)
                .collect(),
        })
        .unwrap_or_default()
    }
}

fn info(reason: &'static str, metadata: Option<ErrorMetadata>) -> Detail {
    Detail::ErrorInfo { reason, metadata }
}

fn resource(resource_type: &'static str, name: &str, description: String) -> Detail {
    Detail::ResourceInfo {
        resource_type,
        resource_name: name.to_string(),
        description,
    }
}

fn meta<const N: usize>(pairs: [(&str, &String); N]) -> ErrorMetadata {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// `{"appID": …}` as daprd's HTTP state-store lookup adds it; nil otherwise.
fn app_meta(http: bool, app_id: &str) -> Option<ErrorMetadata> {
    (http && !app_id.is_empty())
        .then(|| ErrorMetadata::from([("appID".to_string(), app_id.to_string())]))
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
    fn configuration_errors_map_like_daprd() {
        let e = ApiError::ConfigurationGet {
            keys: vec!["a".into(), "b".into()],
            store: "s".into(),
            reason: "down".into(),
        };
        assert_eq!(
            (e.code(), e.http_status(), e.grpc_code()),
            ("ERR_CONFIGURATION_GET", 500, grpc_code::INTERNAL)
        );
        assert_eq!(
            e.to_string(),
            "failed to get [a b] from Configuration store s: down"
        );
        let e = ApiError::ConfigurationStoreNotFound("x".into());
        assert_eq!(
            (e.http_status(), e.grpc_code()),
            (400, grpc_code::INVALID_ARGUMENT)
        );
        assert_eq!(e.to_string(), "configuration store x not found");
        let e = ApiError::ConfigurationStoresNotConfigured;
        assert_eq!(
            (e.http_status(), e.grpc_code()),
            (500, grpc_code::FAILED_PRECONDITION)
        );
    }

    #[test]
    fn json_body_has_dapr_fields() {
        let v: serde_json::Value = serde_json::from_slice(
            &ApiError::StateStoreNotFound {
                store: "x".into(),
                app_id: "app".into(),
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(v["errorCode"], "ERR_STATE_STORE_NOT_FOUND");
        assert_eq!(v["message"], "state store x is not found");
        assert_eq!(v["details"][0]["reason"], "DAPR_STATE_NOT_FOUND");
        assert_eq!(v["details"][0]["metadata"]["appID"], "app");
    }

    #[test]
    fn illegal_key_details_in_daprd_order() {
        let e = ApiError::StateInvalidKey {
            store: "s".into(),
            key: "a||b".into(),
        };
        let d = e.details(Protocol::Grpc);
        assert!(matches!(&d[0], Detail::BadRequest { field, .. } if field == "a||b"));
        assert!(
            matches!(&d[1], Detail::ResourceInfo { resource_type: "state", resource_name, .. } if resource_name == "s")
        );
        assert!(matches!(
            &d[2],
            Detail::ErrorInfo {
                reason: "DAPR_STATE_ILLEGAL_KEY",
                ..
            }
        ));
    }

    #[test]
    fn transactions_not_supported_points_at_the_docs() {
        let e = ApiError::State {
            op: StateOp::Transaction,
            store: "s".into(),
            key: None,
            source: StateError::NotSupported("transactions"),
        };
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(v["errorCode"], "ERR_STATE_STORE_NOT_SUPPORTED");
        assert_eq!(
            v["details"][0]["@type"],
            "type.googleapis.com/google.rpc.Help"
        );
        assert!(v["details"][0]["links"][0]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://docs.dapr.io/"));
        assert_eq!(v["details"][1]["resource_name"], "s");
        assert_eq!(
            v["details"][2]["reason"],
            "DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED"
        );
    }

    #[test]
    fn grpc_wraps_store_failures_http_does_not() {
        let e = ApiError::State {
            op: StateOp::Get,
            store: "s".into(),
            key: Some("k".into()),
            source: StateError::Backend("down".into()),
        };
        assert!(e.details(Protocol::Http).is_empty());
        assert!(matches!(
            e.details(Protocol::Grpc).as_slice(),
            [Detail::ErrorInfo {
                reason: "ERR_STATE_GET",
                metadata: None
            }]
        ));
    }

    #[test]
    fn plain_errors_have_no_details() {
        let e = ApiError::SecretStoreNotFound("x".into());
        assert!(e.details(Protocol::Http).is_empty());
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert!(v.get("details").is_none());
    }
}
