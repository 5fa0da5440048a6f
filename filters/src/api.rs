//! Typed requests and responses, one variant per building block.
//!
//! Front ends decode into these; handler filters consume them. Each building
//! block defines its own operation types in `handlers::<block>`.

use crate::handlers::{
    bindings, configuration, conversation, crypto, health::HealthRequest, invoke, jobs, lock,
    metadata, pubsub, secrets, state,
};

#[derive(Debug)]
pub enum Request {
    Health(HealthRequest),
    Metadata(metadata::MetadataRequest),
    Shutdown,
    State(state::StateRequest),
    Secrets(secrets::SecretsRequest),
    Invoke(invoke::InvokeRequest),
    PubSub(pubsub::PubSubRequest),
    Configuration(configuration::ConfigurationRequest),
    Lock(lock::LockRequest),
    /// Boxed: the largest request, and rare; the enum stays as small as
    /// the invocation path had it.
    Conversation(Box<conversation::ConversationRequest>),
    Crypto(crypto::CryptoRequest),
    /// Boxed: as large as conversation's, and the enum stays small.
    Binding(Box<bindings::BindingRequest>),
    /// Boxed: a job carries its data.
    Jobs(Box<jobs::JobsRequest>),
    /// A call the front end could not decode (unknown route, bad body). It
    /// still runs the chain so auth and metrics see it; the router returns
    /// the error.
    Rejected(crate::ApiError),
}

#[derive(Debug)]
pub enum Response {
    /// Success with nothing to return (HTTP 204, gRPC `Empty`).
    Empty,
    Metadata(Box<metadata::MetadataSnapshot>),
    State(state::StateResponse),
    Secrets(secrets::SecretsResponse),
    /// Not an answer: the front end proxies the call there.
    Proxy(invoke::Upstream),
    /// Bulk publish: the entries that failed (none: all published).
    BulkPublished(pubsub::BulkFailures),
    /// An answer with this HTTP status and no body, made by a filter (a
    /// CORS preflight).
    Bare(u16),
    Configuration(configuration::ConfigurationResponse),
    Lock(lock::LockResponse),
    Conversation(conversation::ConversationResponse),
    /// Boxed: a stream's state is larger than any other answer, and every
    /// call (invocation included) moves a `Response`.
    Crypto(Box<crypto::CryptoResponse>),
    /// An output binding's answer; `None`: it had nothing to return (204).
    Binding(Option<Box<spar_components::bindings::InvokeResponse>>),
    Jobs(Box<jobs::JobsResponse>),
}

impl Response {
    /// The HTTP status this response is sent with; metrics use it too so the
    /// label matches what the client saw.
    pub fn http_status(&self) -> u16 {
        match self {
            Response::Empty => 204,
            Response::Metadata(_) => 200,
            Response::State(s) => s.http_status(),
            Response::Secrets(_) => 200,
            // The app's status is known only after proxying.
            Response::Proxy(_) => 200,
            Response::BulkPublished(f) if f.0.is_empty() => 204,
            Response::BulkPublished(_) => 500,
            Response::Bare(s) => *s,
            // daprd answers a get that found nothing with 204.
            Response::Configuration(configuration::ConfigurationResponse::Items(i))
                if i.is_empty() =>
            {
                204
            }
            Response::Configuration(_) => 200,
            Response::Lock(_) | Response::Conversation(_) => 200,
            Response::Crypto(_) => 200,
            Response::Binding(None) => 204,
            Response::Binding(Some(_)) => 200,
            Response::Jobs(_) => 200,
        }
    }
}
