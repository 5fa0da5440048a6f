//! The Jobs RPCs of the Dapr service (`ScheduleJob`, `GetJob`, `DeleteJob`,
//! `ListJobs`, `DeleteJobsByPrefix` and their `Alpha1` twins), through the
//! shared chain to the jobs handler.

use std::time::Duration;

use spar_filters::handlers::jobs::{Job, JobData, JobFailurePolicy, JobsRequest, JobsResponse};
use spar_filters::{Request, Response};
use spar_proto::common::{
    job_failure_policy::Policy, JobFailurePolicy as PbPolicy, JobFailurePolicyConstant,
    JobFailurePolicyDrop,
};
use spar_proto::runtime as pb;
use tonic::{Request as GrpcRequest, Response as GrpcResponse};

use super::dapr::{unexpected, DaprApi, R};

fn policy_in(p: PbPolicy) -> Option<JobFailurePolicy> {
    Some(match p.policy? {
        Policy::Drop(_) => JobFailurePolicy::Drop,
        Policy::Constant(c) => JobFailurePolicy::Constant {
            interval: c.interval.map(|d| {
                Duration::from_secs(u64::try_from(d.seconds).unwrap_or(0))
                    + Duration::from_nanos(u64::try_from(d.nanos).unwrap_or(0))
            }),
            max_retries: c.max_retries,
        },
    })
}

fn policy_out(p: &JobFailurePolicy) -> PbPolicy {
    PbPolicy {
        policy: Some(match p {
            JobFailurePolicy::Drop => Policy::Drop(JobFailurePolicyDrop {}),
            JobFailurePolicy::Constant {
                interval,
                max_retries,
            } => Policy::Constant(JobFailurePolicyConstant {
                interval: interval.map(|d| prost_types::Duration {
                    seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                    nanos: d.subsec_nanos() as i32,
                }),
                max_retries: *max_retries,
            }),
        }),
    }
}

fn job_in(j: pb::Job) -> Job {
    Job {
        name: j.name,
        schedule: j.schedule,
        repeats: j.repeats,
        due_time: j.due_time,
        ttl: j.ttl,
        data: j.data.map(|a| JobData {
            type_url: a.type_url,
            value: a.value,
        }),
        failure_policy: j.failure_policy.and_then(policy_in),
    }
}

fn job_out(j: Job) -> pb::Job {
    pb::Job {
        name: j.name,
        schedule: j.schedule,
        repeats: j.repeats,
        due_time: j.due_time,
        ttl: j.ttl,
        data: j.data.map(|d| prost_types::Any {
            type_url: d.type_url,
            value: d.value,
        }),
        failure_policy: j.failure_policy.as_ref().map(policy_out),
    }
}

fn jobs(r: JobsRequest) -> Request {
    Request::Jobs(Box::new(r))
}

impl DaprApi {
    pub(super) async fn schedule_job_any(
        &self,
        route: &'static str,
        req: GrpcRequest<pb::ScheduleJobRequest>,
    ) -> R<pb::ScheduleJobResponse> {
        let m = req.get_ref();
        let typed = jobs(JobsRequest::Schedule {
            job: m.job.clone().map(job_in),
            overwrite: m.overwrite,
        });
        match self.call(route, &req, Ok(typed)).await? {
            Response::Empty => Ok(GrpcResponse::new(pb::ScheduleJobResponse {})),
            _ => Err(unexpected()),
        }
    }

    pub(super) async fn get_job_any(
        &self,
        route: &'static str,
        req: GrpcRequest<pb::GetJobRequest>,
    ) -> R<pb::GetJobResponse> {
        let typed = jobs(JobsRequest::Get {
            name: req.get_ref().name.clone(),
        });
        match self.call(route, &req, Ok(typed)).await? {
            Response::Jobs(r) => match *r {
                JobsResponse::Job(j) => Ok(GrpcResponse::new(pb::GetJobResponse {
                    job: Some(job_out(j)),
                })),
                JobsResponse::Jobs(_) => Err(unexpected()),
            },
            _ => Err(unexpected()),
        }
    }

    pub(super) async fn delete_job_any(
        &self,
        route: &'static str,
        req: GrpcRequest<pb::DeleteJobRequest>,
    ) -> R<pb::DeleteJobResponse> {
        let typed = jobs(JobsRequest::Delete {
            name: req.get_ref().name.clone(),
        });
        match self.call(route, &req, Ok(typed)).await? {
            Response::Empty => Ok(GrpcResponse::new(pb::DeleteJobResponse {})),
            _ => Err(unexpected()),
        }
    }

    /// The jobs of this app; both ListJobs RPCs encode them the same way.
    pub(super) async fn list_jobs_any<M: prost::Message>(
        &self,
        route: &'static str,
        req: GrpcRequest<M>,
    ) -> Result<Vec<pb::Job>, tonic::Status> {
        match self.call(route, &req, Ok(jobs(JobsRequest::List))).await? {
            Response::Jobs(r) => match *r {
                JobsResponse::Jobs(list) => Ok(list.into_iter().map(job_out).collect()),
                JobsResponse::Job(_) => Err(unexpected()),
            },
            _ => Err(unexpected()),
        }
    }

    pub(super) async fn delete_jobs_by_prefix_any<M: prost::Message>(
        &self,
        route: &'static str,
        req: GrpcRequest<M>,
        prefix: Option<String>,
    ) -> Result<(), tonic::Status> {
        let typed = jobs(JobsRequest::DeleteByPrefix {
            prefix: prefix.unwrap_or_default(),
        });
        match self.call(route, &req, Ok(typed)).await? {
            Response::Empty => Ok(()),
            _ => Err(unexpected()),
        }
    }
}
