//! `dapr.proto.scheduler.v1.Scheduler` as sidecars call it. Any node
//! answers: a follower forwards the call to the leader (once — a forwarded
//! call that finds no leader here answers UNAVAILABLE and the sidecar
//! tries again). The leader validates, writes through Raft, and answers
//! once the write is committed and applied; reads are linearizable.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use spar_proto::common::{
    job_failure_policy::Policy, JobFailurePolicy, JobFailurePolicyConstant, JobFailurePolicyDrop,
};
use spar_proto::scheduler::scheduler_client::SchedulerClient;
use spar_proto::scheduler::scheduler_server::Scheduler;
use spar_proto::scheduler::{self as pb, job_target_metadata, watch_jobs_request};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::SchedError;
use crate::model::{
    app_prefix, Command, FailurePolicy, JobKey, JobRecord, JobSpec, Outcome, Payload,
};
use crate::network::MAX_MESSAGE;
use crate::node::Node;
use crate::schedule::{check_name, first_tick, now_ms};
use crate::streams::Event;

/// Marks a call a follower forwarded, so it is not forwarded twice.
const FORWARDED: &str = "spar-scheduler-forwarded";
/// The largest job payload stored.
pub const MAX_DATA: usize = 4 << 20;

pub struct SchedulerService {
    pub node: Arc<Node>,
}

type R<T> = Result<Response<T>, Status>;

/// The app a call is about: `app||namespace||app-id||`.
fn app_of(meta: Option<&pb::JobMetadata>) -> Result<(String, String), SchedError> {
    let m = meta.ok_or_else(|| SchedError::BadJob("job metadata is required".into()))?;
    match m.target.as_ref().and_then(|t| t.r#type.as_ref()) {
        Some(job_target_metadata::Type::Job(_)) | None => {}
        Some(job_target_metadata::Type::Actor(_)) => {
            return Err(SchedError::BadJob(
                "actor reminders are not supported by spar scheduler yet".into(),
            ))
        }
    }
    if m.app_id.is_empty() || m.namespace.is_empty() {
        return Err(SchedError::BadJob(
            "app id and namespace are required".into(),
        ));
    }
    Ok((m.namespace.clone(), m.app_id.clone()))
}

fn key_of(name: &str, meta: Option<&pb::JobMetadata>) -> Result<JobKey, SchedError> {
    check_name(name)?;
    let (namespace, app_id) = app_of(meta)?;
    Ok(JobKey {
        namespace,
        app_id,
        name: name.to_string(),
    })
}

fn policy_in(p: Option<JobFailurePolicy>) -> Result<Option<FailurePolicy>, SchedError> {
    Ok(match p.and_then(|p| p.policy) {
        None => None,
        Some(Policy::Drop(_)) => Some(FailurePolicy::Drop),
        Some(Policy::Constant(c)) => {
            let d = c.interval.unwrap_or_default();
            if d.seconds < 0 || d.nanos < 0 {
                return Err(SchedError::BadJob(
                    "the failure policy's interval is negative".into(),
                ));
            }
            let ms = (d.seconds as u64)
                .saturating_mul(1000)
                .saturating_add(d.nanos as u64 / 1_000_000);
            Some(FailurePolicy::Constant {
                interval_ms: ms,
                max_retries: c.max_retries,
            })
        }
    })
}

fn policy_out(p: &FailurePolicy) -> JobFailurePolicy {
    JobFailurePolicy {
        policy: Some(match p {
            FailurePolicy::Drop => Policy::Drop(JobFailurePolicyDrop {}),
            FailurePolicy::Constant {
                interval_ms,
                max_retries,
            } => Policy::Constant(JobFailurePolicyConstant {
                interval: Some(prost_types::Duration {
                    seconds: (*interval_ms / 1000) as i64,
                    nanos: ((*interval_ms % 1000) * 1_000_000) as i32,
                }),
                max_retries: *max_retries,
            }),
        }),
    }
}

fn spec_in(j: pb::Job) -> Result<JobSpec, SchedError> {
    let data = j.data.map(|a| Payload {
        type_url: a.type_url,
        value: a.value,
    });
    if data
        .as_ref()
        .is_some_and(|d| d.value.len() + d.type_url.len() > MAX_DATA)
    {
        return Err(SchedError::BadJob(format!(
            "job data is larger than {MAX_DATA} bytes"
        )));
    }
    Ok(JobSpec {
        schedule: j.schedule.filter(|s| !s.is_empty()),
        repeats: j.repeats.filter(|r| *r > 0),
        due_time: j.due_time.filter(|s| !s.is_empty()),
        ttl: j.ttl.filter(|s| !s.is_empty()),
        data,
        failure_policy: policy_in(j.failure_policy)?,
    })
}

fn spec_out(s: &JobSpec) -> pb::Job {
    pb::Job {
        schedule: s.schedule.clone(),
        repeats: s.repeats,
        due_time: s.due_time.clone(),
        ttl: s.ttl.clone(),
        data: s.data.as_ref().map(|d| prost_types::Any {
            type_url: d.type_url.clone(),
            value: d.value.clone(),
        }),
        failure_policy: s.failure_policy.as_ref().map(policy_out),
    }
}

fn job_metadata(k: &JobKey) -> pb::JobMetadata {
    pb::JobMetadata {
        app_id: k.app_id.clone(),
        namespace: k.namespace.clone(),
        target: Some(pb::JobTargetMetadata {
            r#type: Some(job_target_metadata::Type::Job(pb::TargetJob {})),
        }),
        concurrency_key: None,
    }
}

impl SchedulerService {
    /// A client to the leader when the call must go there.
    async fn route<T>(
        &self,
        req: &Request<T>,
    ) -> Result<Option<SchedulerClient<tonic::transport::Channel>>, Status> {
        match self.node.leader().await? {
            None => Ok(None),
            Some(_) if req.metadata().contains_key(FORWARDED) => {
                Err(SchedError::Unavailable("leadership is moving".into()).into())
            }
            Some(addr) => Ok(Some(
                SchedulerClient::new(self.node.channel(&addr)?)
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE),
            )),
        }
    }

    async fn write(&self, cmd: Command) -> Result<Outcome, SchedError> {
        match self.node.raft.client_write(cmd).await {
            Ok(r) => Ok(r.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(SchedError::Unavailable("leadership moved".into()))
            }
            Err(e) => Err(SchedError::Unavailable(e.to_string())),
        }
    }

    async fn read_barrier(&self) -> Result<(), SchedError> {
        self.node
            .raft
            .ensure_linearizable()
            .await
            .map(|_| ())
            .map_err(|e| SchedError::Unavailable(e.to_string()))
    }
}

/// Sends a request on to the leader with the forwarded mark.
fn onward<T>(req: Request<T>) -> Request<T> {
    let mut r = Request::new(req.into_inner());
    r.metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    r.set_timeout(std::time::Duration::from_secs(20));
    r
}

#[tonic::async_trait]
impl Scheduler for SchedulerService {
    async fn schedule_job(
        &self,
        req: Request<pb::ScheduleJobRequest>,
    ) -> R<pb::ScheduleJobResponse> {
        if let Some(mut c) = self.route(&req).await? {
            return c.schedule_job(onward(req)).await;
        }
        let m = req.into_inner();
        let key = key_of(&m.name, m.metadata.as_ref())?;
        let spec = spec_in(
            m.job
                .ok_or_else(|| SchedError::BadJob("job is required".into()))?,
        )?;
        let created_ms = now_ms();
        let (next_ms, expires_ms) = first_tick(&spec, created_ms)?;
        let name = key.name.clone();
        let record = JobRecord {
            key,
            spec,
            created_ms,
            next_ms,
            expires_ms,
            fired: 0,
            attempt: 0,
        };
        match self
            .write(Command::Put {
                record,
                overwrite: m.overwrite,
            })
            .await?
        {
            Outcome::Done => Ok(Response::new(pb::ScheduleJobResponse {})),
            Outcome::Exists => Err(SchedError::Exists(name).into()),
        }
    }

    async fn get_job(&self, req: Request<pb::GetJobRequest>) -> R<pb::GetJobResponse> {
        if let Some(mut c) = self.route(&req).await? {
            return c.get_job(onward(req)).await;
        }
        let m = req.into_inner();
        let key = key_of(&m.name, m.metadata.as_ref())?;
        self.read_barrier().await?;
        let jobs = self.node.jobs.read().unwrap_or_else(|p| p.into_inner());
        match jobs.get(&key.storage_key()) {
            Some(r) => Ok(Response::new(pb::GetJobResponse {
                job: Some(spec_out(&r.spec)),
            })),
            None => Err(SchedError::NotFound(m.name).into()),
        }
    }

    async fn delete_job(&self, req: Request<pb::DeleteJobRequest>) -> R<pb::DeleteJobResponse> {
        if let Some(mut c) = self.route(&req).await? {
            return c.delete_job(onward(req)).await;
        }
        let m = req.into_inner();
        let key = key_of(&m.name, m.metadata.as_ref())?;
        self.write(Command::Delete { key }).await?;
        Ok(Response::new(pb::DeleteJobResponse {}))
    }

    type WatchJobsStream = ReceiverStream<Result<pb::WatchJobsResponse, Status>>;

    async fn watch_jobs(
        &self,
        req: Request<Streaming<pb::WatchJobsRequest>>,
    ) -> R<Self::WatchJobsStream> {
        let mut inbound = req.into_inner();
        let first = tokio::time::timeout(std::time::Duration::from_secs(10), inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no initial WatchJobs message"))??;
        let initial = match first.and_then(|m| m.watch_job_request_type) {
            Some(watch_jobs_request::WatchJobRequestType::Initial(i)) => i,
            _ => {
                return Err(Status::invalid_argument(
                    "the first WatchJobs message must be `initial`",
                ))
            }
        };
        if initial.app_id.is_empty() || initial.namespace.is_empty() {
            return Err(Status::invalid_argument(
                "app id and namespace are required",
            ));
        }
        let (tx, rx) = mpsc::channel(1024);
        let node = self.node.clone();
        let stream = node
            .streams
            .add(initial.namespace.clone(), initial.app_id.clone(), tx);
        tracing::debug!(
            "WatchJobs stream {stream} from {}/{}",
            initial.namespace,
            initial.app_id
        );
        tokio::spawn(async move {
            while let Ok(Some(m)) = inbound.message().await {
                if let Some(watch_jobs_request::WatchJobRequestType::Result(r)) =
                    m.watch_job_request_type
                {
                    let ok = r.status == pb::WatchJobsRequestResultStatus::Success as i32;
                    let _ = node.events.send(Event::Result { id: r.id, ok });
                }
            }
            node.streams.remove(stream);
            let _ = node.events.send(Event::Closed { stream });
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_jobs(&self, req: Request<pb::ListJobsRequest>) -> R<pb::ListJobsResponse> {
        if let Some(mut c) = self.route(&req).await? {
            return c.list_jobs(onward(req)).await;
        }
        let m = req.into_inner();
        let (ns, app) = app_of(m.metadata.as_ref())?;
        self.read_barrier().await?;
        let jobs = self.node.jobs.read().unwrap_or_else(|p| p.into_inner());
        let list = jobs
            .with_prefix(&app_prefix(&ns, &app))
            .into_iter()
            .map(|r| pb::NamedJob {
                name: r.key.name.clone(),
                metadata: Some(job_metadata(&r.key)),
                job: Some(spec_out(&r.spec)),
            })
            .collect();
        Ok(Response::new(pb::ListJobsResponse { jobs: list }))
    }

    type WatchHostsStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<pb::WatchHostsResponse, Status>> + Send>,
    >;

    /// The configured members, once; the stream then stays open (spar's
    /// membership is static).
    async fn watch_hosts(&self, _req: Request<pb::WatchHostsRequest>) -> R<Self::WatchHostsStream> {
        use futures::StreamExt;
        let hosts = self
            .node
            .peers
            .values()
            .map(|a| pb::Host { address: a.clone() })
            .collect();
        let s = futures::stream::once(async move { Ok(pb::WatchHostsResponse { hosts }) })
            .chain(futures::stream::pending());
        Ok(Response::new(Box::pin(s)))
    }

    async fn delete_by_metadata(
        &self,
        req: Request<pb::DeleteByMetadataRequest>,
    ) -> R<pb::DeleteByMetadataResponse> {
        if let Some(mut c) = self.route(&req).await? {
            return c.delete_by_metadata(onward(req)).await;
        }
        let m = req.into_inner();
        let (ns, app) = app_of(m.metadata.as_ref())?;
        self.write(Command::DeletePrefix {
            prefix: app_prefix(&ns, &app),
        })
        .await?;
        Ok(Response::new(pb::DeleteByMetadataResponse {}))
    }

    async fn delete_by_name_prefix(
        &self,
        req: Request<pb::DeleteByNamePrefixRequest>,
    ) -> R<pb::DeleteByNamePrefixResponse> {
        if let Some(mut c) = self.route(&req).await? {
            return c.delete_by_name_prefix(onward(req)).await;
        }
        let m = req.into_inner();
        let (ns, app) = app_of(m.metadata.as_ref())?;
        self.write(Command::DeletePrefix {
            prefix: format!("{}{}", app_prefix(&ns, &app), m.name_prefix),
        })
        .await?;
        Ok(Response::new(pb::DeleteByNamePrefixResponse {}))
    }
}
