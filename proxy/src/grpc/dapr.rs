//! `dapr.proto.runtime.v1.Dapr`: each RPC decodes into a typed request, runs
//! the shared chain and encodes the answer.

use spar_filters::metrics::invocation::CallType;
use spar_filters::resiliency::Verdict;
use std::sync::Arc;

use prost::Message;
use spar_filters::handlers::invoke::InvokeRequest;
use spar_filters::handlers::metadata::{MetadataRequest, MetadataSnapshot};
use spar_filters::handlers::secrets::{SecretsRequest, SecretsResponse};
use spar_filters::handlers::state::{StateRequest, StateResponse, TxOp};
use spar_filters::{ApiError, Chain, Ctx, Protocol, Request, Response, Runtime};
use spar_proto::runtime::{self as pb, dapr_server::Dapr};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use super::convert;

pub struct DaprApi {
    chain: Chain,
    pub(super) rt: Arc<Runtime>,
    clients: Arc<super::invoke_service::Clients>,
}

impl DaprApi {
    pub fn new(
        chain: Chain,
        rt: Arc<Runtime>,
        clients: Arc<super::invoke_service::Clients>,
    ) -> Self {
        DaprApi { chain, rt, clients }
    }

    pub(super) async fn call<M: Message>(
        &self,
        route: &'static str,
        req: &GrpcRequest<M>,
        typed: Result<Request, ApiError>,
    ) -> Result<Response, Status> {
        let len = req.get_ref().encoded_len();
        self.call_with(route, req.metadata(), len, typed).await
    }

    /// Runs the chain for a call whose body is not one message (a stream).
    pub(super) async fn call_with(
        &self,
        route: &'static str,
        metadata: &tonic::metadata::MetadataMap,
        body_len: usize,
        typed: Result<Request, ApiError>,
    ) -> Result<Response, Status> {
        self.run(route, metadata, body_len, typed).await.0
    }

    /// Runs the chain and hands back the context too: invocation needs the
    /// span it left (ended once the callee answered, sent on as its parent).
    pub(super) async fn run(
        &self,
        route: &'static str,
        metadata: &tonic::metadata::MetadataMap,
        body_len: usize,
        typed: Result<Request, ApiError>,
    ) -> (Result<Response, Status>, Ctx) {
        let mut ctx = Ctx::new(Protocol::Grpc, "POST", route);
        ctx.api_token = metadata
            .get("dapr-api-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        ctx.trace_parent = super::trace_context(metadata);
        ctx.headers = self.chain.read_headers(|n| {
            metadata
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
        ctx.body_len = body_len;
        let typed = typed.unwrap_or_else(Request::Rejected);
        let r = self
            .chain
            .handle(&mut ctx, typed)
            .await
            .map_err(|e| convert::status(&e));
        super::answer_headers::keep(&mut ctx);
        (r, ctx)
    }
}

/// A gRPC metadata value as text.
pub(super) fn metadata_str<M>(req: &GrpcRequest<M>, key: &str) -> Option<String> {
    req.metadata()
        .get(key)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub(super) fn unexpected() -> Status {
    Status::internal("handler returned an unexpected response type")
}

pub(super) type R<T> = Result<GrpcResponse<T>, Status>;

#[tonic::async_trait]
impl Dapr for DaprApi {
    async fn invoke_service(
        &self,
        req: GrpcRequest<pb::InvokeServiceRequest>,
    ) -> R<spar_proto::common::InvokeResponse> {
        let m = req.get_ref();
        let msg = m.message.clone().unwrap_or_default();
        let deadline = req
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(super::invoke_service::parse_grpc_timeout)
            .map(super::invoke_service::own_deadline);
        let typed = Request::Invoke(InvokeRequest {
            app_id: m.id.clone(),
            method: msg.method.clone(),
        });
        let len = req.get_ref().encoded_len();
        let (r, mut ctx) = self
            .run(
                "/dapr.proto.runtime.v1.Dapr/InvokeService",
                req.metadata(),
                len,
                Ok(typed),
            )
            .await;
        match r? {
            Response::Proxy(up) => {
                let dst = m.id.split('.').next().unwrap_or_default().to_owned();
                let metered = !matches!(up, spar_filters::handlers::invoke::Upstream::External(_));
                let started = std::time::Instant::now();
                if let (Some(mx), true) = (&self.rt.metrics, metered) {
                    mx.invoke_sent(&dst, CallType::Unary);
                }
                let mut span = ctx.span.take();
                let trace = span
                    .as_ref()
                    .map(|s| s.context())
                    .or(ctx.trace_parent.as_ref());
                let send = || {
                    super::invoke_service::call(
                        &self.clients,
                        up.clone(),
                        msg.clone(),
                        req.metadata(),
                        self.rt.app_token.as_deref(),
                        deadline,
                        trace,
                        &self.rt.app_id,
                    )
                };
                // A resiliency policy for the target app: the same executor
                // as HTTP invocation (the request is one message, so every
                // attempt resends it whole).
                let policy = metered
                    .then(|| self.rt.live().resiliency.app(&dst).cloned())
                    .flatten();
                let r = match policy {
                    None => send().await,
                    Some(p) => p
                        .run(send, |r| match r {
                            Ok(_) => Verdict::Success,
                            Err(s) => Verdict::Failed(Some(s.code() as u32)),
                        })
                        .await
                        .map_err(|e| super::refused(e, &dst)),
                };
                if let (Some(s), Err(e)) = (span.as_mut(), &r) {
                    s.grpc_status(e.code() as i32, e.message());
                }
                if let (Some(mx), true) = (&self.rt.metrics, metered) {
                    let code = r.as_ref().map_or_else(|e| e.code() as i32, |_| 0);
                    mx.invoke_answered(&dst, &code.to_string(), CallType::Unary, started);
                }
                r.map(|(resp, md)| {
                    let mut r = GrpcResponse::new(resp);
                    *r.metadata_mut() = md;
                    r
                })
            }
            _ => Err(unexpected()),
        }
    }

    async fn get_state(&self, req: GrpcRequest<pb::GetStateRequest>) -> R<pb::GetStateResponse> {
        let m = req.get_ref();
        let typed = Request::State(StateRequest::Get {
            store: m.store_name.clone(),
            key: m.key.clone(),
            consistency: convert::consistency(m.consistency),
            metadata: m.metadata.clone(),
        });
        match self
            .call("/dapr.proto.runtime.v1.Dapr/GetState", &req, Ok(typed))
            .await?
        {
            Response::State(StateResponse::Item(item)) => {
                Ok(GrpcResponse::new(item.map_or_else(Default::default, |i| {
                    pb::GetStateResponse {
                        data: i.data,
                        etag: i.etag.unwrap_or_default(),
                        metadata: i.metadata,
                    }
                })))
            }
            _ => Err(unexpected()),
        }
    }

    async fn get_bulk_state(
        &self,
        req: GrpcRequest<pb::GetBulkStateRequest>,
    ) -> R<pb::GetBulkStateResponse> {
        let m = req.get_ref();
        let typed = Request::State(StateRequest::BulkGet {
            store: m.store_name.clone(),
            keys: m.keys.clone(),
            metadata: m.metadata.clone(),
        });
        match self
            .call("/dapr.proto.runtime.v1.Dapr/GetBulkState", &req, Ok(typed))
            .await?
        {
            Response::State(StateResponse::Bulk(items)) => {
                Ok(GrpcResponse::new(pb::GetBulkStateResponse {
                    items: items
                        .into_iter()
                        .map(|b| pb::BulkStateItem {
                            key: b.key,
                            data: b.data.unwrap_or_default(),
                            etag: b.etag.unwrap_or_default(),
                            error: b.error.unwrap_or_default(),
                            metadata: b.metadata,
                        })
                        .collect(),
                }))
            }
            _ => Err(unexpected()),
        }
    }

    async fn save_state(&self, req: GrpcRequest<pb::SaveStateRequest>) -> R<()> {
        let m = req.get_ref();
        let typed = Request::State(StateRequest::Save {
            store: m.store_name.clone(),
            items: m.states.iter().cloned().map(convert::save_item).collect(),
        });
        self.call("/dapr.proto.runtime.v1.Dapr/SaveState", &req, Ok(typed))
            .await?;
        Ok(GrpcResponse::new(()))
    }

    async fn query_state_alpha1(
        &self,
        req: GrpcRequest<pb::QueryStateRequest>,
    ) -> R<pb::QueryStateResponse> {
        let m = req.get_ref();
        let typed = Request::State(StateRequest::Query {
            store: m.store_name.clone(),
            query: m.query.as_bytes().to_vec(),
            metadata: m.metadata.clone(),
        });
        match self
            .call(
                "/dapr.proto.runtime.v1.Dapr/QueryStateAlpha1",
                &req,
                Ok(typed),
            )
            .await?
        {
            Response::State(StateResponse::Query(q)) => {
                Ok(GrpcResponse::new(pb::QueryStateResponse {
                    results: q
                        .results
                        .into_iter()
                        .map(|(key, data, etag)| pb::QueryStateItem {
                            key,
                            data,
                            etag: etag.unwrap_or_default(),
                            error: String::new(),
                        })
                        .collect(),
                    token: q.token.unwrap_or_default(),
                    metadata: q.metadata,
                }))
            }
            _ => Err(unexpected()),
        }
    }

    async fn delete_state(&self, req: GrpcRequest<pb::DeleteStateRequest>) -> R<()> {
        let m = req.get_ref();
        let item = convert::delete_item(spar_proto::common::StateItem {
            key: m.key.clone(),
            etag: m.etag.clone(),
            options: m.options,
            metadata: m.metadata.clone(),
            value: Vec::new(),
        });
        let typed = Request::State(StateRequest::Delete {
            store: m.store_name.clone(),
            item,
        });
        self.call("/dapr.proto.runtime.v1.Dapr/DeleteState", &req, Ok(typed))
            .await?;
        Ok(GrpcResponse::new(()))
    }

    async fn delete_bulk_state(&self, req: GrpcRequest<pb::DeleteBulkStateRequest>) -> R<()> {
        let m = req.get_ref();
        let typed = Request::State(StateRequest::BulkDelete {
            store: m.store_name.clone(),
            items: m.states.iter().cloned().map(convert::delete_item).collect(),
        });
        self.call(
            "/dapr.proto.runtime.v1.Dapr/DeleteBulkState",
            &req,
            Ok(typed),
        )
        .await?;
        Ok(GrpcResponse::new(()))
    }

    async fn execute_state_transaction(
        &self,
        req: GrpcRequest<pb::ExecuteStateTransactionRequest>,
    ) -> R<()> {
        let m = req.get_ref();
        let typed = (|| {
            let mut ops = Vec::with_capacity(m.operations.len());
            for op in &m.operations {
                let item = op.request.clone().ok_or_else(|| {
                    ApiError::MalformedRequest("transaction operation without request".into())
                })?;
                ops.push(match op.operation_type.as_str() {
                    "upsert" => TxOp::Upsert(convert::save_item(item)),
                    "delete" => TxOp::Delete(convert::delete_item(item)),
                    other => {
                        return Err(ApiError::MalformedRequest(format!(
                            "operation type {other} not supported"
                        )))
                    }
                });
            }
            Ok(Request::State(StateRequest::Transaction {
                store: m.store_name.clone(),
                ops,
                metadata: m.metadata.clone(),
            }))
        })();
        self.call(
            "/dapr.proto.runtime.v1.Dapr/ExecuteStateTransaction",
            &req,
            typed,
        )
        .await?;
        Ok(GrpcResponse::new(()))
    }

    async fn publish_event(&self, req: GrpcRequest<pb::PublishEventRequest>) -> R<()> {
        self.publish(req).await
    }

    async fn bulk_publish_event_alpha1(
        &self,
        req: GrpcRequest<pb::BulkPublishRequest>,
    ) -> R<pb::BulkPublishResponse> {
        self.bulk_publish(req, "/dapr.proto.runtime.v1.Dapr/BulkPublishEventAlpha1")
            .await
    }

    async fn bulk_publish_event(
        &self,
        req: GrpcRequest<pb::BulkPublishRequest>,
    ) -> R<pb::BulkPublishResponse> {
        self.bulk_publish(req, "/dapr.proto.runtime.v1.Dapr/BulkPublishEvent")
            .await
    }

    type SubscribeTopicEventsAlpha1Stream = super::pubsub::EventStream;

    async fn subscribe_topic_events_alpha1(
        &self,
        req: GrpcRequest<tonic::Streaming<pb::SubscribeTopicEventsRequestAlpha1>>,
    ) -> R<Self::SubscribeTopicEventsAlpha1Stream> {
        self.subscribe_stream(req).await
    }

    async fn invoke_binding(
        &self,
        req: GrpcRequest<pb::InvokeBindingRequest>,
    ) -> R<pb::InvokeBindingResponse> {
        self.invoke_binding(req).await
    }

    async fn schedule_job_alpha1(
        &self,
        req: GrpcRequest<pb::ScheduleJobRequest>,
    ) -> R<pb::ScheduleJobResponse> {
        self.schedule_job_any("/dapr.proto.runtime.v1.Dapr/ScheduleJobAlpha1", req)
            .await
    }

    async fn schedule_job(
        &self,
        req: GrpcRequest<pb::ScheduleJobRequest>,
    ) -> R<pb::ScheduleJobResponse> {
        self.schedule_job_any("/dapr.proto.runtime.v1.Dapr/ScheduleJob", req)
            .await
    }

    async fn get_job_alpha1(&self, req: GrpcRequest<pb::GetJobRequest>) -> R<pb::GetJobResponse> {
        self.get_job_any("/dapr.proto.runtime.v1.Dapr/GetJobAlpha1", req)
            .await
    }

    async fn get_job(&self, req: GrpcRequest<pb::GetJobRequest>) -> R<pb::GetJobResponse> {
        self.get_job_any("/dapr.proto.runtime.v1.Dapr/GetJob", req)
            .await
    }

    async fn delete_job_alpha1(
        &self,
        req: GrpcRequest<pb::DeleteJobRequest>,
    ) -> R<pb::DeleteJobResponse> {
        self.delete_job_any("/dapr.proto.runtime.v1.Dapr/DeleteJobAlpha1", req)
            .await
    }

    async fn delete_job(&self, req: GrpcRequest<pb::DeleteJobRequest>) -> R<pb::DeleteJobResponse> {
        self.delete_job_any("/dapr.proto.runtime.v1.Dapr/DeleteJob", req)
            .await
    }

    async fn delete_jobs_by_prefix_alpha1(
        &self,
        req: GrpcRequest<pb::DeleteJobsByPrefixRequestAlpha1>,
    ) -> R<pb::DeleteJobsByPrefixResponseAlpha1> {
        let prefix = req.get_ref().name_prefix.clone();
        self.delete_jobs_by_prefix_any(
            "/dapr.proto.runtime.v1.Dapr/DeleteJobsByPrefixAlpha1",
            req,
            prefix,
        )
        .await?;
        Ok(GrpcResponse::new(pb::DeleteJobsByPrefixResponseAlpha1 {}))
    }

    async fn delete_jobs_by_prefix(
        &self,
        req: GrpcRequest<pb::DeleteJobsByPrefixRequest>,
    ) -> R<pb::DeleteJobsByPrefixResponse> {
        let prefix = req.get_ref().name_prefix.clone();
        self.delete_jobs_by_prefix_any(
            "/dapr.proto.runtime.v1.Dapr/DeleteJobsByPrefix",
            req,
            prefix,
        )
        .await?;
        Ok(GrpcResponse::new(pb::DeleteJobsByPrefixResponse {}))
    }

    async fn list_jobs_alpha1(
        &self,
        req: GrpcRequest<pb::ListJobsRequestAlpha1>,
    ) -> R<pb::ListJobsResponseAlpha1> {
        let jobs = self
            .list_jobs_any("/dapr.proto.runtime.v1.Dapr/ListJobsAlpha1", req)
            .await?;
        Ok(GrpcResponse::new(pb::ListJobsResponseAlpha1 { jobs }))
    }

    async fn list_jobs(&self, req: GrpcRequest<pb::ListJobsRequest>) -> R<pb::ListJobsResponse> {
        let jobs = self
            .list_jobs_any("/dapr.proto.runtime.v1.Dapr/ListJobs", req)
            .await?;
        Ok(GrpcResponse::new(pb::ListJobsResponse { jobs }))
    }

    async fn try_lock_alpha1(
        &self,
        req: GrpcRequest<pb::TryLockRequest>,
    ) -> R<pb::TryLockResponse> {
        self.try_lock(req).await
    }

    async fn unlock_alpha1(&self, req: GrpcRequest<pb::UnlockRequest>) -> R<pb::UnlockResponse> {
        self.unlock(req).await
    }

    async fn converse_alpha1(
        &self,
        req: GrpcRequest<pb::ConversationRequest>,
    ) -> R<pb::ConversationResponse> {
        self.converse1(req).await
    }

    async fn converse_alpha2(
        &self,
        req: GrpcRequest<pb::ConversationRequestAlpha2>,
    ) -> R<pb::ConversationResponseAlpha2> {
        self.converse2(req).await
    }

    async fn get_secret(&self, req: GrpcRequest<pb::GetSecretRequest>) -> R<pb::GetSecretResponse> {
        let m = req.get_ref();
        let typed = Request::Secrets(SecretsRequest::Get {
            store: m.store_name.clone(),
            name: m.key.clone(),
            metadata: m
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        });
        match self
            .call("/dapr.proto.runtime.v1.Dapr/GetSecret", &req, Ok(typed))
            .await?
        {
            Response::Secrets(SecretsResponse::One(s)) => {
                Ok(GrpcResponse::new(pb::GetSecretResponse {
                    data: s.into_iter().collect(),
                }))
            }
            _ => Err(unexpected()),
        }
    }

    async fn get_bulk_secret(
        &self,
        req: GrpcRequest<pb::GetBulkSecretRequest>,
    ) -> R<pb::GetBulkSecretResponse> {
        let m = req.get_ref();
        let typed = Request::Secrets(SecretsRequest::Bulk {
            store: m.store_name.clone(),
            metadata: m
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        });
        match self
            .call("/dapr.proto.runtime.v1.Dapr/GetBulkSecret", &req, Ok(typed))
            .await?
        {
            Response::Secrets(SecretsResponse::Bulk(all)) => {
                Ok(GrpcResponse::new(pb::GetBulkSecretResponse {
                    data: all
                        .into_iter()
                        .map(|(name, s)| {
                            (
                                name,
                                pb::SecretResponse {
                                    secrets: s.into_iter().collect(),
                                },
                            )
                        })
                        .collect(),
                }))
            }
            _ => Err(unexpected()),
        }
    }

    async fn get_configuration_alpha1(
        &self,
        req: GrpcRequest<pb::GetConfigurationRequest>,
    ) -> R<pb::GetConfigurationResponse> {
        self.get_configuration_rpc(req, "/dapr.proto.runtime.v1.Dapr/GetConfigurationAlpha1")
            .await
    }

    async fn get_configuration(
        &self,
        req: GrpcRequest<pb::GetConfigurationRequest>,
    ) -> R<pb::GetConfigurationResponse> {
        self.get_configuration_rpc(req, "/dapr.proto.runtime.v1.Dapr/GetConfiguration")
            .await
    }

    type SubscribeConfigurationAlpha1Stream = super::configuration::ConfigurationStream;

    async fn subscribe_configuration_alpha1(
        &self,
        req: GrpcRequest<pb::SubscribeConfigurationRequest>,
    ) -> R<Self::SubscribeConfigurationAlpha1Stream> {
        self.subscribe_configuration_rpc(
            req,
            "/dapr.proto.runtime.v1.Dapr/SubscribeConfigurationAlpha1",
        )
        .await
    }

    type SubscribeConfigurationStream = super::configuration::ConfigurationStream;

    async fn subscribe_configuration(
        &self,
        req: GrpcRequest<pb::SubscribeConfigurationRequest>,
    ) -> R<Self::SubscribeConfigurationStream> {
        self.subscribe_configuration_rpc(req, "/dapr.proto.runtime.v1.Dapr/SubscribeConfiguration")
            .await
    }

    async fn unsubscribe_configuration_alpha1(
        &self,
        req: GrpcRequest<pb::UnsubscribeConfigurationRequest>,
    ) -> R<pb::UnsubscribeConfigurationResponse> {
        self.unsubscribe_configuration_rpc(
            req,
            "/dapr.proto.runtime.v1.Dapr/UnsubscribeConfigurationAlpha1",
        )
        .await
    }

    async fn unsubscribe_configuration(
        &self,
        req: GrpcRequest<pb::UnsubscribeConfigurationRequest>,
    ) -> R<pb::UnsubscribeConfigurationResponse> {
        self.unsubscribe_configuration_rpc(
            req,
            "/dapr.proto.runtime.v1.Dapr/UnsubscribeConfiguration",
        )
        .await
    }

    async fn get_metadata(
        &self,
        req: GrpcRequest<pb::GetMetadataRequest>,
    ) -> R<pb::GetMetadataResponse> {
        let typed = Request::Metadata(MetadataRequest::Get);
        match self
            .call("/dapr.proto.runtime.v1.Dapr/GetMetadata", &req, Ok(typed))
            .await?
        {
            Response::Metadata(m) => Ok(GrpcResponse::new(metadata(&m))),
            _ => Err(unexpected()),
        }
    }

    async fn set_metadata(&self, req: GrpcRequest<pb::SetMetadataRequest>) -> R<()> {
        let m = req.get_ref();
        let typed = Request::Metadata(MetadataRequest::Set {
            key: m.key.clone(),
            value: m.value.clone(),
        });
        self.call("/dapr.proto.runtime.v1.Dapr/SetMetadata", &req, Ok(typed))
            .await?;
        Ok(GrpcResponse::new(()))
    }

    type EncryptAlpha1Stream = super::crypto::EncryptStream;

    async fn encrypt_alpha1(
        &self,
        req: GrpcRequest<tonic::Streaming<pb::EncryptRequest>>,
    ) -> R<Self::EncryptAlpha1Stream> {
        self.encrypt_stream(req).await
    }

    type DecryptAlpha1Stream = super::crypto::DecryptStream;

    async fn decrypt_alpha1(
        &self,
        req: GrpcRequest<tonic::Streaming<pb::DecryptRequest>>,
    ) -> R<Self::DecryptAlpha1Stream> {
        self.decrypt_stream(req).await
    }

    async fn subtle_get_key_alpha1(
        &self,
        req: GrpcRequest<pb::SubtleGetKeyRequest>,
    ) -> R<pb::SubtleGetKeyResponse> {
        use spar_filters::handlers::crypto::SubtleResult;
        let s = super::crypto::subtle_get_key(req.get_ref());
        match self
            .subtle("/dapr.proto.runtime.v1.Dapr/SubtleGetKeyAlpha1", &req, s)
            .await?
        {
            SubtleResult::Key { name, public_key } => {
                Ok(GrpcResponse::new(pb::SubtleGetKeyResponse {
                    name,
                    public_key,
                }))
            }
            _ => Err(unexpected()),
        }
    }

    async fn subtle_encrypt_alpha1(
        &self,
        req: GrpcRequest<pb::SubtleEncryptRequest>,
    ) -> R<pb::SubtleEncryptResponse> {
        use spar_filters::handlers::crypto::SubtleResult;
        let s = super::crypto::subtle_encrypt(req.get_ref());
        match self
            .subtle("/dapr.proto.runtime.v1.Dapr/SubtleEncryptAlpha1", &req, s)
            .await?
        {
            SubtleResult::Encrypted { ciphertext, tag } => {
                Ok(GrpcResponse::new(pb::SubtleEncryptResponse {
                    ciphertext,
                    tag,
                }))
            }
            _ => Err(unexpected()),
        }
    }

    async fn subtle_decrypt_alpha1(
        &self,
        req: GrpcRequest<pb::SubtleDecryptRequest>,
    ) -> R<pb::SubtleDecryptResponse> {
        use spar_filters::handlers::crypto::SubtleResult;
        let s = super::crypto::subtle_decrypt(req.get_ref());
        match self
            .subtle("/dapr.proto.runtime.v1.Dapr/SubtleDecryptAlpha1", &req, s)
            .await?
        {
            SubtleResult::Decrypted(plaintext) => {
                Ok(GrpcResponse::new(pb::SubtleDecryptResponse { plaintext }))
            }
            _ => Err(unexpected()),
        }
    }

    async fn subtle_wrap_key_alpha1(
        &self,
        req: GrpcRequest<pb::SubtleWrapKeyRequest>,
    ) -> R<pb::SubtleWrapKeyResponse> {
        use spar_filters::handlers::crypto::SubtleResult;
        let s = super::crypto::subtle_wrap(req.get_ref());
        match self
            .subtle("/dapr.proto.runtime.v1.Dapr/SubtleWrapKeyAlpha1", &req, s)
            .await?
        {
            SubtleResult::Wrapped { wrapped_key, tag } => {
                Ok(GrpcResponse::new(pb::SubtleWrapKeyResponse {
                    wrapped_key,
                    tag,
                }))
            }
            _ => Err(unexpected()),
        }
    }

    async fn subtle_unwrap_key_alpha1(
        &self,
        req: GrpcRequest<pb::SubtleUnwrapKeyRequest>,
    ) -> R<pb::SubtleUnwrapKeyResponse> {
        use spar_filters::handlers::crypto::SubtleResult;
        let s = super::crypto::subtle_unwrap(req.get_ref());
        match self
            .subtle("/dapr.proto.runtime.v1.Dapr/SubtleUnwrapKeyAlpha1", &req, s)
            .await?
        {
            SubtleResult::Unwrapped(plaintext_key) => {
                Ok(GrpcResponse::new(pb::SubtleUnwrapKeyResponse {
                    plaintext_key,
                }))
            }
            _ => Err(unexpected()),
        }
    }

    async fn subtle_sign_alpha1(
        &self,
        req: GrpcRequest<pb::SubtleSignRequest>,
    ) -> R<pb::SubtleSignResponse> {
        use spar_filters::handlers::crypto::SubtleResult;
        let s = super::crypto::subtle_sign(req.get_ref());
        match self
            .subtle("/dapr.proto.runtime.v1.Dapr/SubtleSignAlpha1", &req, s)
            .await?
        {
            SubtleResult::Signed(signature) => {
                Ok(GrpcResponse::new(pb::SubtleSignResponse { signature }))
            }
            _ => Err(unexpected()),
        }
    }

    async fn subtle_verify_alpha1(
        &self,
        req: GrpcRequest<pb::SubtleVerifyRequest>,
    ) -> R<pb::SubtleVerifyResponse> {
        use spar_filters::handlers::crypto::SubtleResult;
        let s = super::crypto::subtle_verify(req.get_ref());
        match self
            .subtle("/dapr.proto.runtime.v1.Dapr/SubtleVerifyAlpha1", &req, s)
            .await?
        {
            SubtleResult::Verified(valid) => {
                Ok(GrpcResponse::new(pb::SubtleVerifyResponse { valid }))
            }
            _ => Err(unexpected()),
        }
    }

    async fn shutdown(&self, req: GrpcRequest<pb::ShutdownRequest>) -> R<()> {
        self.call(
            "/dapr.proto.runtime.v1.Dapr/Shutdown",
            &req,
            Ok(Request::Shutdown),
        )
        .await?;
        Ok(GrpcResponse::new(()))
    }
}

fn metadata(m: &MetadataSnapshot) -> pb::GetMetadataResponse {
    pb::GetMetadataResponse {
        id: m.id.clone(),
        registered_components: m
            .components
            .iter()
            .map(|c| pb::RegisteredComponents {
                name: c.name.clone(),
                r#type: c.type_.clone(),
                version: c.version.clone(),
                capabilities: c.capabilities.clone(),
            })
            .collect(),
        extended_metadata: m
            .extended
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        subscriptions: m
            .subscriptions
            .iter()
            .map(|s| pb::PubsubSubscription {
                pubsub_name: s.pubsub.clone(),
                topic: s.topic.clone(),
                metadata: Default::default(),
                rules: Some(pb::PubsubSubscriptionRules {
                    rules: s
                        .rules
                        .iter()
                        .map(|p| pb::PubsubSubscriptionRule {
                            r#match: String::new(),
                            path: p.clone(),
                        })
                        .collect(),
                }),
                dead_letter_topic: s.dead_letter.clone().unwrap_or_default(),
                r#type: match s.kind {
                    "DECLARATIVE" => pb::PubsubSubscriptionType::Declarative,
                    "STREAMING" => pb::PubsubSubscriptionType::Streaming,
                    _ => pb::PubsubSubscriptionType::Programmatic,
                } as i32,
            })
            .collect(),
        http_endpoints: m
            .http_endpoints
            .iter()
            .map(|n| pb::MetadataHttpEndpoint { name: n.clone() })
            .collect(),
        app_connection_properties: m
            .app_connection
            .as_ref()
            .map(|a| pb::AppConnectionProperties {
                port: i32::from(a.port),
                protocol: a.protocol.clone(),
                channel_address: a.channel_address.clone(),
                max_concurrency: a.max_concurrency,
                health: a
                    .health
                    .as_ref()
                    .map(|h| pb::AppConnectionHealthProperties {
                        health_check_path: h.path.clone(),
                        health_probe_interval: humantime::format_duration(h.interval).to_string(),
                        health_probe_timeout: humantime::format_duration(h.timeout).to_string(),
                        health_threshold: h.threshold as i32,
                    }),
            }),
        runtime_version: m.runtime_version.clone(),
        enabled_features: m.enabled_features.clone(),
    }
}
