//! The leader's trigger loop. It sends each due job to a sidecar of its app
//! on a `WatchJobs` stream and, once the sidecar answers, records the tick
//! through Raft (`Command::Ticked`): the next tick, a retry, or the end of
//! the job. A job in flight is not sent again until its answer is recorded,
//! its stream closes, or the answer is overdue. A new leader starts from
//! the committed state, so a tick whose answer was not yet recorded fires
//! again there: at least once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ServerState;
use spar_proto::scheduler as pb;
use tokio::sync::mpsc;

use crate::model::{Command, JobRecord};
use crate::node::Node;
use crate::schedule::now_ms;
use crate::streams::Event;

/// How long a sidecar may take to answer before the job is sent again.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// Due jobs sent per pass.
const BATCH: usize = 1024;
/// Re-check for due jobs that could not be sent (no stream yet).
const POLL: Duration = Duration::from_millis(50);
/// A leader of several voters fires only while a quorum acknowledged it
/// this recently (longer than an election takes): a leader that was
/// paused or cut off (SIGSTOP, a partition) stops firing before, or as,
/// another is elected, rather than firing stale ticks when it resumes.
const LEASE: Duration = Duration::from_millis(1000);

struct Flight {
    id: u64,
    due_ms: i64,
    stream: Option<u64>,
    sent: Instant,
    /// The answer is being recorded; the job stays put until it is.
    recording: bool,
}

pub async fn run(node: Arc<Node>, mut events: mpsc::UnboundedReceiver<Event>) {
    let mut metrics = node.raft.metrics();
    loop {
        let leader = metrics.borrow().state == ServerState::Leader;
        if !leader {
            tokio::select! {
                r = metrics.changed() => if r.is_err() { return },
                // Answers meant for an earlier term: nothing to record.
                e = events.recv() => if e.is_none() { return },
            }
            continue;
        }
        // Fire only once this node's state machine has everything committed
        // before it took over.
        if node.raft.ensure_linearizable().await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        tracing::info!("scheduler node {} leads: triggering jobs", node.id);
        lead(&node, &mut metrics, &mut events).await;
    }
}

fn job_message(rec: &JobRecord, id: u64) -> pb::WatchJobsResponse {
    pb::WatchJobsResponse {
        name: rec.key.name.clone(),
        id,
        data: rec.spec.data.as_ref().map(|d| prost_types::Any {
            type_url: d.type_url.clone(),
            value: d.value.clone(),
        }),
        metadata: Some(pb::JobMetadata {
            app_id: rec.key.app_id.clone(),
            namespace: rec.key.namespace.clone(),
            target: Some(pb::JobTargetMetadata {
                r#type: Some(pb::job_target_metadata::Type::Job(pb::TargetJob {})),
            }),
            concurrency_key: None,
        }),
    }
}

async fn lead(
    node: &Arc<Node>,
    metrics: &mut tokio::sync::watch::Receiver<openraft::RaftMetrics<u64, openraft::BasicNode>>,
    events: &mut mpsc::UnboundedReceiver<Event>,
) {
    let mut flights: HashMap<String, Flight> = HashMap::new();
    let mut by_id: HashMap<u64, String> = HashMap::new();
    let mut next_id: u64 = 1;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    // When a quorum last acknowledged this leader, on the monotonic clock
    // (which runs on while the process is stopped). `None`: a single voter.
    // Read only from fresh metrics: a stale reading re-dated to now would
    // look fresh.
    let mut acked_at: Option<Instant> = None;
    let mut first = true; // read the metrics afresh
    loop {
        let fresh = std::mem::take(&mut first) || metrics.has_changed().unwrap_or(false);
        let leads = {
            let m = metrics.borrow_and_update();
            if fresh {
                let voters = m.membership_config.membership().voter_ids().count();
                acked_at = match m.millis_since_quorum_ack {
                    Some(ms) if voters > 1 => Instant::now().checked_sub(Duration::from_millis(ms)),
                    _ => None,
                };
            }
            m.state == ServerState::Leader
        };
        if !leads {
            tracing::info!("scheduler node {} no longer leads", node.id);
            return;
        }
        let now = now_ms();
        let (due, earliest) = {
            let jobs = node.jobs.read().unwrap_or_else(|p| p.into_inner());
            (jobs.due(now, BATCH + flights.len()), jobs.earliest())
        };
        let mut unsent = false;
        let lease_ok = acked_at.is_none_or(|t| t.elapsed() < LEASE);
        let due = if lease_ok { due } else { Vec::new() };
        for rec in due {
            let key = rec.key.storage_key();
            if flights.contains_key(&key) {
                continue;
            }
            if matches!(rec.expires_ms, Some(e) if now > e) {
                flights.insert(
                    key.clone(),
                    Flight {
                        id: 0,
                        due_ms: rec.next_ms,
                        stream: None,
                        sent: Instant::now(),
                        recording: true,
                    },
                );
                propose(
                    node,
                    Command::Expire {
                        key: rec.key.clone(),
                        due_ms: rec.next_ms,
                    },
                    key,
                    &done_tx,
                );
                continue;
            }
            let id = next_id;
            next_id += 1;
            match node
                .streams
                .send(&rec.key.namespace, &rec.key.app_id, job_message(&rec, id))
            {
                Some(stream) => {
                    by_id.insert(id, key.clone());
                    flights.insert(
                        key,
                        Flight {
                            id,
                            due_ms: rec.next_ms,
                            stream: Some(stream),
                            sent: Instant::now(),
                            recording: false,
                        },
                    );
                }
                None => unsent = true,
            }
        }
        // Overdue answers: send again.
        flights.retain(|_, f| {
            let keep = f.recording || f.sent.elapsed() < ANSWER_TIMEOUT;
            if !keep {
                by_id.remove(&f.id);
            }
            keep
        });
        let wait = match earliest {
            _ if unsent || !lease_ok => POLL,
            Some(t) if t > now => Duration::from_millis(u64::try_from(t - now).unwrap_or(0))
                .min(Duration::from_secs(1)),
            // Everything due is in flight: wait for answers.
            Some(_) => Duration::from_secs(1),
            None => Duration::from_secs(1),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = node.changed.notified() => {}
            r = metrics.changed() => match r {
                Err(_) => return,
                Ok(()) => first = true,
            },
            k = done_rx.recv() => if let Some(k) = k { flights.remove(&k); },
            e = events.recv() => match e {
                None => return,
                Some(Event::Result { id, ok }) => {
                    if let Some(key) = by_id.remove(&id) {
                        if let Some(f) = flights.get_mut(&key) {
                            f.recording = true;
                            let jobs = node.jobs.read().unwrap_or_else(|p| p.into_inner());
                            let rec_key = jobs.get(&key).map(|r| r.key.clone());
                            drop(jobs);
                            match rec_key {
                                Some(k) => propose(
                                    node,
                                    Command::Ticked { key: k, due_ms: f.due_ms, now_ms: now_ms(), ok },
                                    key,
                                    &done_tx,
                                ),
                                None => { flights.remove(&key); }
                            }
                        }
                    }
                }
                Some(Event::Closed { stream }) => {
                    flights.retain(|_, f| {
                        let keep = f.recording || f.stream != Some(stream);
                        if !keep {
                            by_id.remove(&f.id);
                        }
                        keep
                    });
                }
            },
        }
    }
}

/// Records through Raft in the background; the loop hears back on `done`.
fn propose(node: &Arc<Node>, cmd: Command, key: String, done: &mpsc::UnboundedSender<String>) {
    let raft = node.raft.clone();
    let done = done.clone();
    tokio::spawn(async move {
        if let Err(e) = raft.client_write(cmd).await {
            tracing::warn!("recording a job tick: {e}");
        }
        let _ = done.send(key);
    });
}
