//! One scheduler node: storage, Raft, the gRPC listener (Scheduler for
//! sidecars, Raft for peers), the trigger loop; cluster bootstrap.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, Config};
use spar_proto::raft::raft_server::RaftServer;
use spar_proto::scheduler::scheduler_server::SchedulerServer;
use tokio::sync::{mpsc, Notify};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Channel;

use crate::jobs::Jobs;
use crate::network::{self, Network, RaftService, MAX_MESSAGE};
use crate::service::SchedulerService;
use crate::streams::{Event, Streams};
use crate::tls::{Connect, Tls, TlsSetup};
use crate::{store, trigger, NodeId, SchedRaft, SchedulerArgs};

pub struct Node {
    pub id: NodeId,
    pub raft: SchedRaft,
    /// Every member's address, this node's included.
    pub peers: BTreeMap<NodeId, String>,
    pub jobs: Arc<RwLock<Jobs>>,
    pub changed: Arc<Notify>,
    pub streams: Streams,
    pub events: mpsc::UnboundedSender<Event>,
    /// Channels to peers, for calls forwarded to the leader.
    channels: Mutex<HashMap<String, Channel>>,
    tls: Option<Connect>,
}

impl Node {
    /// The leader's address when it is another node; `None` when this node
    /// leads. Waits a little for an election in progress.
    pub async fn leader(&self) -> Result<Option<String>, crate::SchedError> {
        let mut m = self.raft.metrics();
        let wait = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(l) = m.borrow().current_leader {
                    return Some(l);
                }
                if m.changed().await.is_err() {
                    return None;
                }
            }
        });
        match wait.await {
            Ok(Some(l)) if l == self.id => Ok(None),
            Ok(Some(l)) => self.peers.get(&l).cloned().map(Some).ok_or_else(|| {
                crate::SchedError::Unavailable(format!("leader {l} has no known address"))
            }),
            _ => Err(crate::SchedError::Unavailable("no leader elected".into())),
        }
    }

    pub fn channel(&self, addr: &str) -> Result<Channel, crate::SchedError> {
        let mut m = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = m.get(addr) {
            return Ok(c.clone());
        }
        let c =
            network::channel(addr, self.tls.as_ref()).map_err(crate::SchedError::Unavailable)?;
        m.insert(addr.to_string(), c.clone());
        Ok(c)
    }
}

/// `1=host:port,2=host:port`; none: this node alone on loopback.
fn peers(args: &SchedulerArgs) -> Result<BTreeMap<NodeId, String>, String> {
    let mut out = BTreeMap::new();
    for p in &args.peers {
        let (id, addr) = p
            .split_once('=')
            .ok_or_else(|| format!("--peers entry {p:?}: expected id=host:port"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("--peers entry {p:?}: the id is not a number"))?;
        let addr = addr.trim().trim_start_matches("http://").to_string();
        if addr.is_empty() {
            return Err(format!("--peers entry {p:?}: no address"));
        }
        out.insert(id, addr);
    }
    if out.is_empty() {
        out.insert(args.id, format!("127.0.0.1:{}", args.port));
    }
    if !out.contains_key(&args.id) {
        return Err(format!("--id {} is not among --peers", args.id));
    }
    Ok(out)
}

pub async fn serve(args: SchedulerArgs, tls: Option<TlsSetup>) -> Result<(), String> {
    let peers = peers(&args)?;
    let tls: Option<Tls> = match tls {
        Some(setup) => Some(setup.await?),
        None => None,
    };
    let connect = tls.as_ref().map(|t| t.connect.clone());
    let (log, sm) = store::open(&args.data_dir)?;
    let jobs = sm.jobs.clone();
    let changed = sm.changed.clone();
    let config = Config {
        cluster_name: "spar-scheduler".into(),
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        ..Default::default()
    }
    .validate()
    .map_err(|e| e.to_string())?;
    let raft = openraft::Raft::new(
        args.id,
        Arc::new(config),
        Network {
            tls: connect.clone(),
        },
        log,
        sm,
    )
    .await
    .map_err(|e| e.to_string())?;

    let addr: SocketAddr = format!("{}:{}", args.listen_address, args.port)
        .parse()
        .map_err(|e| format!("--listen-address {}: {e}", args.listen_address))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;

    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let node = Arc::new(Node {
        id: args.id,
        raft: raft.clone(),
        peers: peers.clone(),
        jobs,
        changed,
        streams: Streams::default(),
        events: events_tx,
        channels: Mutex::new(HashMap::new()),
        tls: connect,
    });
    tokio::spawn(trigger::run(node.clone(), events_rx));

    // The lowest id bootstraps the cluster on its first start; afterwards
    // (a log exists) openraft refuses, which is the expected answer.
    if peers.keys().next() == Some(&args.id) {
        let members: BTreeMap<NodeId, BasicNode> = peers
            .iter()
            .map(|(i, a)| (*i, BasicNode { addr: a.clone() }))
            .collect();
        let r = raft.clone();
        tokio::spawn(async move {
            match r.initialize(members).await {
                Ok(()) => tracing::info!("scheduler cluster initialised"),
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => tracing::warn!("initialising the scheduler cluster: {e}"),
            }
        });
    }

    tracing::info!(
        "scheduler node {} listening on {addr}{} (data in {}, {} member(s))",
        args.id,
        if tls.is_some() { " with mTLS" } else { "" },
        args.data_dir.display(),
        peers.len()
    );
    let shutdown = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    };
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(
            SchedulerServer::new(SchedulerService { node: node.clone() })
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            RaftServer::new(RaftService { raft: raft.clone() })
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        );
    let result = match &tls {
        Some(t) => {
            router
                .serve_with_incoming_shutdown(
                    crate::tls::incoming(listener, t.server.clone()),
                    shutdown,
                )
                .await
        }
        None => {
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                .await
        }
    }
    .map_err(|e| e.to_string());
    let _ = tokio::time::timeout(Duration::from_secs(5), raft.shutdown()).await;
    result
}
