//! Sidecars' `WatchJobs` streams connected to this node, by (namespace,
//! app id). Every node keeps its own; only the leader sends on them (a
//! sidecar connects to every node, so the leader always has its stream).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use spar_proto::scheduler as pb;
use tokio::sync::mpsc;
use tonic::Status;

/// (namespace, app id).
type AppKey = (String, String);

pub type Outbound = mpsc::Sender<Result<pb::WatchJobsResponse, Status>>;

/// What the streams tell the trigger loop.
#[derive(Debug)]
pub enum Event {
    /// The sidecar's answer for the job sent with this id.
    Result { id: u64, ok: bool },
    /// A stream ended: jobs sent on it and not answered are sent again.
    Closed { stream: u64 },
}

#[derive(Default)]
pub struct Streams {
    by_app: Mutex<HashMap<AppKey, Vec<(u64, Outbound)>>>,
    next_id: AtomicU64,
    round_robin: AtomicUsize,
}

impl Streams {
    pub fn add(&self, namespace: String, app_id: String, tx: Outbound) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut m = self.by_app.lock().unwrap_or_else(|p| p.into_inner());
        m.entry((namespace, app_id)).or_default().push((id, tx));
        id
    }

    pub fn remove(&self, stream: u64) {
        let mut m = self.by_app.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, v| {
            v.retain(|(id, _)| *id != stream);
            !v.is_empty()
        });
    }

    /// Sends to one of the app's streams (round robin across replicas);
    /// the stream it went on, or `None` when the app has none with room.
    pub fn send(&self, namespace: &str, app_id: &str, msg: pb::WatchJobsResponse) -> Option<u64> {
        let m = self.by_app.lock().unwrap_or_else(|p| p.into_inner());
        let v = m.get(&(namespace.to_string(), app_id.to_string()))?;
        let start = self.round_robin.fetch_add(1, Ordering::Relaxed);
        let mut msg = Some(msg);
        for i in 0..v.len() {
            let (id, tx) = &v[(start + i) % v.len()];
            match tx.try_send(Ok(msg.take()?)) {
                Ok(()) => return Some(*id),
                Err(mpsc::error::TrySendError::Full(Ok(m)))
                | Err(mpsc::error::TrySendError::Closed(Ok(m))) => msg = Some(m),
                Err(_) => return None,
            }
        }
        None
    }
}
