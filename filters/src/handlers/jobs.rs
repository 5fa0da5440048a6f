//! The Jobs API: `POST|GET|DELETE /v1.0-alpha1/jobs/{name}` (and
//! `/v1.0/`), gRPC `ScheduleJob`/`GetJob`/`DeleteJob`/`ListJobs`/
//! `DeleteJobsByPrefix` and their `Alpha1` twins. daprd's own checks
//! first (in its order), then the call to the scheduler
//! (`--scheduler-host-address`) through a [`JobsBackend`] the binary
//! provides; the scheduler validates the schedule itself.

use std::time::Duration;

use async_trait::async_trait;

use crate::{ApiError, ApiResult, Response, Runtime};

/// `google.protobuf.Any`, as the caller gave it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobData {
    pub type_url: String,
    pub value: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JobFailurePolicy {
    Drop,
    Constant {
        interval: Option<Duration>,
        max_retries: Option<u32>,
    },
}

/// A job as the Jobs API reads and returns it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Job {
    pub name: String,
    pub schedule: Option<String>,
    pub repeats: Option<u32>,
    pub due_time: Option<String>,
    pub ttl: Option<String>,
    pub data: Option<JobData>,
    pub failure_policy: Option<JobFailurePolicy>,
}

#[derive(Debug)]
pub enum JobsRequest {
    /// `job: None` is a gRPC request without one.
    Schedule {
        job: Option<Job>,
        overwrite: bool,
    },
    Get {
        name: String,
    },
    Delete {
        name: String,
    },
    List,
    DeleteByPrefix {
        prefix: String,
    },
}

#[derive(Debug)]
pub enum JobsResponse {
    Job(Job),
    Jobs(Vec<Job>),
}

/// A failed call to the scheduler: its gRPC code and message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("rpc error: code = {} desc = {message}", code_name(*.code))]
pub struct SchedulerError {
    pub code: i32,
    pub message: String,
}

/// Go's names for gRPC codes, as daprd's messages print them.
fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}

/// The scheduler as the handler sees it (the binary implements it over
/// gRPC, with fail-over across the scheduler's nodes).
#[async_trait]
pub trait JobsBackend: Send + Sync {
    async fn schedule(&self, job: Job, overwrite: bool) -> Result<(), SchedulerError>;
    async fn get(&self, name: &str) -> Result<Job, SchedulerError>;
    async fn delete(&self, name: &str) -> Result<(), SchedulerError>;
    async fn list(&self) -> Result<Vec<Job>, SchedulerError>;
    async fn delete_by_prefix(&self, prefix: &str) -> Result<(), SchedulerError>;
}

/// Which Jobs operation failed: picks daprd's error code and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOp {
    Schedule,
    Get,
    Delete,
    List,
    DeleteByPrefix,
}

fn not_connected() -> SchedulerError {
    SchedulerError {
        code: 14,
        message: "no scheduler configured (--scheduler-host-address)".into(),
    }
}

pub async fn handle(rt: &Runtime, req: JobsRequest) -> ApiResult {
    let app = || rt.app_id.clone();
    let ns = || rt.namespace.clone().unwrap_or_else(|| "default".into());
    let fail = |op: JobOp| {
        move |source: SchedulerError| ApiError::Scheduler {
            op,
            app_id: app(),
            namespace: ns(),
            source,
        }
    };
    let empty = |field: &'static str, reason: &'static str| ApiError::JobEmpty {
        field,
        reason,
        app_id: app(),
        namespace: ns(),
    };
    let backend = rt.jobs.as_ref();
    match req {
        JobsRequest::Schedule { job, overwrite } => {
            let job = job.ok_or_else(|| empty("Job", "DAPR_SCHEDULER_EMPTY"))?;
            if job.name.is_empty() {
                return Err(empty("Name", "DAPR_SCHEDULER_JOB_NAME_EMPTY"));
            }
            if job.schedule.is_none() && job.due_time.is_none() {
                return Err(empty("Schedule", "DAPR_SCHEDULER_SCHEDULE_EMPTY"));
            }
            let b = backend
                .ok_or_else(not_connected)
                .map_err(fail(JobOp::Schedule))?;
            b.schedule(job, overwrite)
                .await
                .map_err(fail(JobOp::Schedule))?;
            Ok(Response::Empty)
        }
        JobsRequest::Get { name } => {
            if name.is_empty() {
                return Err(empty("Name", "DAPR_SCHEDULER_JOB_NAME_EMPTY"));
            }
            let b = backend
                .ok_or_else(not_connected)
                .map_err(fail(JobOp::Get))?;
            let mut job = b.get(&name).await.map_err(fail(JobOp::Get))?;
            job.name = name;
            Ok(Response::Jobs(Box::new(JobsResponse::Job(job))))
        }
        JobsRequest::Delete { name } => {
            if name.is_empty() {
                return Err(empty("Name", "DAPR_SCHEDULER_JOB_NAME_EMPTY"));
            }
            let b = backend
                .ok_or_else(not_connected)
                .map_err(fail(JobOp::Delete))?;
            b.delete(&name).await.map_err(fail(JobOp::Delete))?;
            Ok(Response::Empty)
        }
        JobsRequest::List => {
            let b = backend
                .ok_or_else(not_connected)
                .map_err(fail(JobOp::List))?;
            let jobs = b.list().await.map_err(fail(JobOp::List))?;
            Ok(Response::Jobs(Box::new(JobsResponse::Jobs(jobs))))
        }
        JobsRequest::DeleteByPrefix { prefix } => {
            let b = backend
                .ok_or_else(not_connected)
                .map_err(fail(JobOp::DeleteByPrefix))?;
            b.delete_by_prefix(&prefix)
                .await
                .map_err(fail(JobOp::DeleteByPrefix))?;
            Ok(Response::Empty)
        }
    }
}
