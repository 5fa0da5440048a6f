//! One `WatchJobs` stream per scheduler node, as daprd keeps: only the
//! leader sends jobs, and with a stream on every node the sidecar hears
//! from whichever node leads, before and after a fail-over. Each job is
//! delivered to the app and answered on the stream it came on (SUCCESS or
//! FAILED: the scheduler applies the job's failure policy). A stream that
//! ends is opened again after a second.

use std::sync::Arc;
use std::time::Duration;

use spar_filters::Runtime;
use spar_proto::scheduler as pb;
use spar_proto::scheduler::scheduler_client::SchedulerClient as Grpc;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::client::{channel, SchedulerClient};
use super::deliver::AppSink;
use crate::security::tls::TlsConnector;

/// Starts one watcher per node; they end when `stop` flips.
pub fn spawn_watchers(rt: Arc<Runtime>, client: &SchedulerClient, stop: watch::Receiver<bool>) {
    for addr in client.addresses() {
        let rt = rt.clone();
        let stop = stop.clone();
        let app_id = client.app_id.clone();
        let namespace = client.namespace.clone();
        let tls = client.tls.clone();
        tokio::spawn(async move { watch_node(rt, addr, tls, app_id, namespace, stop).await });
    }
}

async fn app_ready(rt: &Arc<Runtime>, stop: &mut watch::Receiver<bool>) -> Option<AppSink> {
    let addr = rt.app_addr()?;
    loop {
        let up = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
            .await
            .is_ok_and(|r| r.is_ok());
        if up {
            return AppSink::new(rt, addr);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stop.changed() => return None,
        }
    }
}

async fn watch_node(
    rt: Arc<Runtime>,
    addr: String,
    tls: Option<TlsConnector>,
    app_id: String,
    namespace: String,
    mut stop: watch::Receiver<bool>,
) {
    // Jobs go to the app: no app, no stream (the scheduler keeps them).
    let Some(sink) = app_ready(&rt, &mut stop).await else {
        return;
    };
    let sink = Arc::new(sink);
    let ch = match channel(&addr, tls.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return;
        }
    };
    loop {
        if *stop.borrow() {
            return;
        }
        let (tx, rx) = mpsc::channel::<pb::WatchJobsRequest>(256);
        let initial = pb::WatchJobsRequest {
            watch_job_request_type: Some(pb::watch_jobs_request::WatchJobRequestType::Initial(
                pb::WatchJobsRequestInitial {
                    app_id: app_id.clone(),
                    namespace: namespace.clone(),
                    actor_types: Vec::new(),
                    accept_job_types: vec![pb::JobTargetType::Job as i32],
                    concurrency_limits: Vec::new(),
                },
            )),
        };
        let _ = tx.send(initial).await;
        let mut client = Grpc::new(ch.clone());
        let opened = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(10), client.watch_jobs(ReceiverStream::new(rx))) => r,
            _ = stop.changed() => return,
        };
        match opened {
            Ok(Ok(resp)) => {
                tracing::debug!("watching jobs on scheduler {addr}");
                let mut jobs = resp.into_inner();
                loop {
                    let msg = tokio::select! {
                        m = jobs.message() => m,
                        _ = stop.changed() => return,
                    };
                    match msg {
                        Ok(Some(job)) => {
                            let sink = sink.clone();
                            let tx = tx.clone();
                            tokio::spawn(async move {
                                let ok = sink.deliver(&job).await;
                                let status = if ok {
                                    pb::WatchJobsRequestResultStatus::Success
                                } else {
                                    pb::WatchJobsRequestResultStatus::Failed
                                };
                                let _ = tx
                                    .send(pb::WatchJobsRequest {
                                        watch_job_request_type: Some(
                                            pb::watch_jobs_request::WatchJobRequestType::Result(
                                                pb::WatchJobsRequestResult {
                                                    id: job.id,
                                                    status: status as i32,
                                                },
                                            ),
                                        ),
                                    })
                                    .await;
                            });
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!("job stream from scheduler {addr}: {e}");
                            break;
                        }
                    }
                }
            }
            Ok(Err(e)) => tracing::debug!("scheduler {addr}: {e}"),
            Err(_) => tracing::debug!("scheduler {addr}: WatchJobs did not open in 10 s"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}
