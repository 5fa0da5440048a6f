//! Jobs API calls to the scheduler. Any node answers (followers forward to
//! the leader), so a call goes to the node that answered last and moves on
//! to the next address when a node is unreachable or has no leader yet,
//! until the call's budget is spent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use spar_filters::handlers::jobs::{Job, JobData, JobFailurePolicy, JobsBackend, SchedulerError};
use spar_proto::common::JobFailurePolicy as PbPolicy;
use spar_proto::common::{
    job_failure_policy::Policy, JobFailurePolicyConstant, JobFailurePolicyDrop,
};
use spar_proto::scheduler as pb;
use spar_proto::scheduler::scheduler_client::SchedulerClient as Grpc;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::security::tls::TlsConnector;

/// daprd's budget for one Jobs API call.
const CALL_BUDGET: Duration = Duration::from_secs(30);
/// One attempt on one node.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_MESSAGE: usize = 64 << 20;

pub struct SchedulerClient {
    pub app_id: String,
    pub namespace: String,
    nodes: Vec<(String, Channel)>,
    current: AtomicUsize,
    /// Under mTLS: this sidecar's certificate presented, the scheduler's
    /// (`dapr-scheduler`) required.
    pub(super) tls: Option<TlsConnector>,
}

pub fn channel(addr: &str, tls: Option<&TlsConnector>) -> Result<Channel, String> {
    let ep = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("--scheduler-host-address {addr}: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5));
    Ok(match tls {
        Some(t) => ep.connect_with_connector_lazy(t.clone()),
        None => ep.connect_lazy(),
    })
}

impl SchedulerClient {
    pub fn new(
        addrs: &[String],
        app_id: String,
        namespace: String,
        tls: Option<TlsConnector>,
    ) -> Result<Self, String> {
        let mut nodes = Vec::new();
        for a in addrs {
            let a = a.trim().trim_start_matches("http://");
            if a.is_empty() {
                continue;
            }
            nodes.push((a.to_string(), channel(a, tls.as_ref())?));
        }
        if nodes.is_empty() {
            return Err("--scheduler-host-address: no address".into());
        }
        Ok(SchedulerClient {
            app_id,
            namespace,
            nodes,
            current: AtomicUsize::new(0),
            tls,
        })
    }

    pub fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(|(a, _)| a.clone()).collect()
    }

    fn metadata(&self) -> pb::JobMetadata {
        pb::JobMetadata {
            app_id: self.app_id.clone(),
            namespace: self.namespace.clone(),
            target: Some(pb::JobTargetMetadata {
                r#type: Some(pb::job_target_metadata::Type::Job(pb::TargetJob {})),
            }),
            concurrency_key: None,
        }
    }

    /// Runs `call` against the nodes, failing over on UNAVAILABLE (node
    /// down, no leader, leadership moving) and on an attempt's timeout.
    async fn run<T, F, Fut>(&self, call: F) -> Result<T, SchedulerError>
    where
        F: Fn(Grpc<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let started = Instant::now();
        let mut last = Status::unavailable("no scheduler answered");
        let mut tries = 0usize;
        while started.elapsed() < CALL_BUDGET {
            let i = self.current.load(Ordering::Relaxed) % self.nodes.len();
            let client = Grpc::new(self.nodes[i].1.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE);
            let status = match tokio::time::timeout(ATTEMPT_TIMEOUT, call(client)).await {
                Ok(Ok(r)) => return Ok(r.into_inner()),
                Ok(Err(s)) if s.code() != Code::Unavailable => return Err(err(&s)),
                Ok(Err(s)) => s,
                Err(_) => {
                    Status::unavailable(format!("scheduler {} did not answer", self.nodes[i].0))
                }
            };
            last = status;
            let _ = self.current.compare_exchange(
                i,
                (i + 1) % self.nodes.len(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            tries += 1;
            // A full round without an answer: give an election time.
            if tries.is_multiple_of(self.nodes.len()) {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        Err(err(&last))
    }
}

fn err(s: &Status) -> SchedulerError {
    SchedulerError {
        code: s.code() as i32,
        message: s.message().to_string(),
    }
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

fn job_in(name: String, j: pb::Job) -> Job {
    Job {
        name,
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

#[async_trait]
impl JobsBackend for SchedulerClient {
    async fn schedule(&self, job: Job, overwrite: bool) -> Result<(), SchedulerError> {
        let req = pb::ScheduleJobRequest {
            name: job.name.clone(),
            job: Some(pb::Job {
                schedule: job.schedule,
                repeats: job.repeats,
                due_time: job.due_time,
                ttl: job.ttl,
                data: job.data.map(|d| prost_types::Any {
                    type_url: d.type_url,
                    value: d.value,
                }),
                failure_policy: job.failure_policy.as_ref().map(policy_out),
            }),
            metadata: Some(self.metadata()),
            overwrite,
        };
        self.run(|mut c| {
            let r = req.clone();
            async move { c.schedule_job(r).await }
        })
        .await
        .map(|_| ())
    }

    async fn get(&self, name: &str) -> Result<Job, SchedulerError> {
        let req = pb::GetJobRequest {
            name: name.to_string(),
            metadata: Some(self.metadata()),
        };
        let r = self
            .run(|mut c| {
                let r = req.clone();
                async move { c.get_job(r).await }
            })
            .await?;
        Ok(job_in(name.to_string(), r.job.unwrap_or_default()))
    }

    async fn delete(&self, name: &str) -> Result<(), SchedulerError> {
        let req = pb::DeleteJobRequest {
            name: name.to_string(),
            metadata: Some(self.metadata()),
        };
        self.run(|mut c| {
            let r = req.clone();
            async move { c.delete_job(r).await }
        })
        .await
        .map(|_| ())
    }

    async fn list(&self) -> Result<Vec<Job>, SchedulerError> {
        let req = pb::ListJobsRequest {
            metadata: Some(self.metadata()),
        };
        let r = self
            .run(|mut c| {
                let r = req.clone();
                async move { c.list_jobs(r).await }
            })
            .await?;
        Ok(r.jobs
            .into_iter()
            .map(|n| job_in(n.name, n.job.unwrap_or_default()))
            .collect())
    }

    async fn delete_by_prefix(&self, prefix: &str) -> Result<(), SchedulerError> {
        let req = pb::DeleteByNamePrefixRequest {
            name_prefix: prefix.to_string(),
            metadata: Some(self.metadata()),
        };
        self.run(|mut c| {
            let r = req.clone();
            async move { c.delete_by_name_prefix(r).await }
        })
        .await
        .map(|_| ())
    }
}
