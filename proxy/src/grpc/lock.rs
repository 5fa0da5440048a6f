//! The distributed lock RPCs of the Dapr service: `TryLockAlpha1` and
//! `UnlockAlpha1`, through the shared chain.

use spar_filters::handlers::lock::{LockRequest, LockResponse};
use spar_filters::{Request, Response};
use spar_proto::runtime as pb;
use tonic::{Request as GrpcRequest, Response as GrpcResponse};

use super::dapr::{unexpected, DaprApi, R};

impl DaprApi {
    pub(super) async fn try_lock(
        &self,
        req: GrpcRequest<pb::TryLockRequest>,
    ) -> R<pb::TryLockResponse> {
        let m = req.get_ref();
        let typed = Request::Lock(LockRequest::TryLock {
            store: m.store_name.clone(),
            resource_id: m.resource_id.clone(),
            owner: m.lock_owner.clone(),
            expiry_in_seconds: m.expiry_in_seconds,
        });
        match self
            .call("/dapr.proto.runtime.v1.Dapr/TryLockAlpha1", &req, Ok(typed))
            .await?
        {
            Response::Lock(LockResponse::TryLock { success }) => {
                Ok(GrpcResponse::new(pb::TryLockResponse { success }))
            }
            _ => Err(unexpected()),
        }
    }

    pub(super) async fn unlock(
        &self,
        req: GrpcRequest<pb::UnlockRequest>,
    ) -> R<pb::UnlockResponse> {
        let m = req.get_ref();
        let typed = Request::Lock(LockRequest::Unlock {
            store: m.store_name.clone(),
            resource_id: m.resource_id.clone(),
            owner: m.lock_owner.clone(),
        });
        match self
            .call("/dapr.proto.runtime.v1.Dapr/UnlockAlpha1", &req, Ok(typed))
            .await?
        {
            Response::Lock(LockResponse::Unlock { status }) => {
                Ok(GrpcResponse::new(pb::UnlockResponse {
                    status: status as i32,
                }))
            }
            _ => Err(unexpected()),
        }
    }
}
