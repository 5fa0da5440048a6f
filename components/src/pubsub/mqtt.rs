//! `pubsub.mqtt3`: MQTT 3.1.1 (Mosquitto, EMQX, …), as Dapr's component.
//!
//! Subscribing: one connection per consumer group, QoS 1 with clean session
//! off and a stable client id, so the broker keeps the session (queued
//! messages, unacknowledged deliveries) while the subscriber — or its whole
//! sidecar — is away. Acknowledgements are manual: PUBACK only after the
//! handler answered SUCCESS or DROP. MQTT has no negative acknowledgement,
//! so RETRY makes the component call the handler again with backoff (as
//! daprd's component does) until it succeeds or the subscription closes;
//! an unacknowledged message is sent again when the session resumes.
//!
//! Client ids: `consumerID` when the component sets it (daprd's meaning:
//! the client id; make it unique per replica, e.g. `{podName}`); otherwise
//! `{group}-{hostname}`, unique per host (per pod on Kubernetes) and the
//! same after a restart, so a restarted sidecar resumes its session.
//! Competing consumers: subscriptions use the shared-subscription filter
//! `$share/{group}/{topic}`, so replicas of one app id share a topic's
//! messages and different app ids each get all of them; several
//! subscriptions of one group in one process share its connection and take
//! turns. Subscription topics may be filters with wildcards (`+`, `#`),
//! passed to the broker inside the shared subscription; a message is handed
//! over with its concrete topic to every subscription whose filter matches
//! it (the broker sends a client one copy). MQTT 3.1.1 carries no
//! headers: `Message::metadata` is not kept; deliveries carry `retained`,
//! as daprd's.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, Transport};
use spar_config::Component;
use tokio::sync::{oneshot, watch};

use super::{
    Ack, Features, Handler, InFlight, Message, PubSub, PubSubError, SubscribeRequest, Subscription,
};
use crate::build::{BuildContext, BuildError};
use crate::meta::Meta;

/// PEM CA certificate, and the client's certificate and key.
type Tls = (Vec<u8>, Option<(Vec<u8>, Vec<u8>)>);

#[derive(Debug, Clone)]
struct Options {
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
    tls: Option<Tls>,
    client_id: Option<String>,
    qos: QoS,
    retain: bool,
    clean_session: bool,
    timeout: Duration,
}

fn backend(e: impl std::fmt::Display) -> PubSubError {
    PubSubError::Backend(format!("mqtt: {e}"))
}

fn options(c: &Component) -> Result<Options, BuildError> {
    let m = Meta::new(c);
    let url = m
        .str("url")
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| m.error("url", "is required (tcp://user:password@host:1883)"))?;
    let url = url.trim();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| m.error("url", format!("{url:?} needs a scheme (tcp:// or ssl://)")))?;
    let tls = match scheme {
        "tcp" | "mqtt" => false,
        "ssl" | "tls" | "mqtts" | "tcps" => true,
        o => return Err(m.error("url", format!("scheme {o:?} must be tcp or ssl"))),
    };
    let rest = rest.trim_end_matches('/');
    let (creds, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            (Some((user.to_string(), pass.to_string())), h)
        }
        None => (None, rest),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse()
                .map_err(|_| m.error("url", format!("port {p:?} is not a number")))?,
        ),
        None => (hostport.to_string(), if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        return Err(m.error("url", "has no host"));
    }
    let qos = match m.one_of("qos", &["0", "1", "2"], "1")? {
        "0" => QoS::AtMostOnce,
        "2" => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
    };
    let tls = if tls {
        let ca = m
            .str("caCert")
            .ok_or_else(|| m.error("caCert", "is required with ssl://"))?;
        let client = match (m.str("clientCert"), m.str("clientKey")) {
            (Some(cert), Some(key)) => Some((cert.into_bytes(), key.into_bytes())),
            (None, None) => None,
            _ => return Err(m.error("clientCert", "clientCert and clientKey go together")),
        };
        Some((ca.into_bytes(), client))
    } else {
        None
    };
    Ok(Options {
        host,
        port,
        credentials: creds,
        tls,
        client_id: m.str("consumerID").filter(|v| !v.trim().is_empty()),
        qos,
        retain: m.bool("retain", false)?,
        clean_session: m.bool("cleanSession", false)?,
        timeout: m.duration("timeout", Duration::from_secs(5))?,
    })
}

impl Options {
    fn mqtt(&self, client_id: &str, clean: bool, inflight: u16) -> MqttOptions {
        let mut o = MqttOptions::new(client_id, self.host.clone(), self.port);
        o.set_keep_alive(Duration::from_secs(30))
            .set_clean_session(clean)
            .set_inflight(inflight.max(1));
        if let Some((u, p)) = &self.credentials {
            o.set_credentials(u.clone(), p.clone());
        }
        if let Some((ca, client_auth)) = &self.tls {
            o.set_transport(Transport::tls_with_config(
                rumqttc::TlsConfiguration::Simple {
                    ca: ca.clone(),
                    alpn: None,
                    client_auth: client_auth.clone(),
                },
            ));
        }
        o
    }
}

pub struct Mqtt {
    o: Options,
    publisher: Publisher,
    /// Consumer connections by group, opened on first subscribe.
    groups: Mutex<HashMap<String, Arc<Group>>>,
}

pub fn build(c: &Component, _ctx: &BuildContext) -> Result<Arc<dyn PubSub>, BuildError> {
    let o = options(c)?;
    let base = o.client_id.clone().unwrap_or_else(|| "spar".into());
    let id = format!(
        "{base}-pub-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let publisher = Publisher::start(&o, &id);
    Ok(Arc::new(Mqtt {
        o,
        publisher,
        groups: Mutex::new(HashMap::new()),
    }))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "local".into())
}

/// A topic name to publish to: no wildcards.
fn valid_topic(t: &str) -> Result<(), PubSubError> {
    if t.is_empty() || t.contains(['+', '#', '\0']) || t.starts_with('$') {
        return Err(PubSubError::Invalid(format!(
            "{t:?} is not an MQTT topic name (empty, wildcards, or $-prefixed)"
        )));
    }
    Ok(())
}

/// A topic filter to subscribe to: wildcards allowed where MQTT allows
/// them (`+` a whole level, `#` the whole last level), as daprd passes
/// them to the broker.
fn valid_filter(f: &str) -> Result<(), PubSubError> {
    let levels: Vec<&str> = f.split('/').collect();
    let bad = f.is_empty()
        || f.contains('\0')
        || f.starts_with('$')
        || levels.iter().enumerate().any(|(i, l)| {
            (l.contains('+') && *l != "+")
                || (l.contains('#') && (*l != "#" || i + 1 != levels.len()))
        });
    if bad {
        return Err(PubSubError::Invalid(format!(
            "{f:?} is not an MQTT topic filter (empty, $-prefixed, or a wildcard that is not a whole level, '#' not last)"
        )));
    }
    Ok(())
}

/// Whether the concrete `topic` matches the (valid) `filter`.
fn matches(filter: &str, topic: &str) -> bool {
    let mut t = topic.split('/');
    for f in filter.split('/') {
        match (f, t.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(l)) if f == l => {}
            _ => return false,
        }
    }
    t.next().is_none()
}

// ------------------------------------------------------------ publishing

type Waiter = oneshot::Sender<Result<(), PubSubError>>;

/// Publishes at QoS 1 on its own clean-session connection and resolves
/// each call when the broker's PUBACK for it arrives.
/// The publisher's connection, as its event loop last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Link {
    Pending,
    Up,
    Down(String),
}

struct Publisher {
    client: AsyncClient,
    /// The connection as last seen: whether the broker has answered
    /// (`init` waits for its first answer, as daprd's Init connects).
    link: watch::Receiver<Link>,
    /// Calls whose PUBLISH has not gone out yet, in request order.
    queued: Arc<Mutex<VecDeque<Waiter>>>,
    qos: QoS,
    retain: bool,
    timeout: Duration,
}

impl Publisher {
    fn start(o: &Options, id: &str) -> Publisher {
        let (client, ev) = AsyncClient::new(o.mqtt(id, true, 100), 1024);
        let queued: Arc<Mutex<VecDeque<Waiter>>> = Arc::default();
        let (link_tx, link) = watch::channel(Link::Pending);
        tokio::spawn(Self::events(ev, queued.clone(), link_tx));
        Publisher {
            client,
            link,
            queued,
            qos: o.qos,
            retain: o.retain,
            timeout: o.timeout,
        }
    }

    /// Matches outgoing PUBLISHes to their calls (same order) and PUBACKs
    /// to them by packet id; a dropped connection fails every waiting call.
    async fn events(
        mut ev: EventLoop,
        queued: Arc<Mutex<VecDeque<Waiter>>>,
        link: watch::Sender<Link>,
    ) {
        let mut sent: HashMap<u16, Waiter> = HashMap::new();
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    link.send_replace(Link::Up);
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    let w = queued.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                    if let Some(w) = w {
                        if pkid == 0 {
                            let _ = w.send(Ok(())); // QoS 0: nothing to wait for
                        } else {
                            sent.insert(pkid, w);
                        }
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(a))) => {
                    if let Some(w) = sent.remove(&a.pkid) {
                        let _ = w.send(Ok(()));
                    }
                }
                Ok(Event::Incoming(Packet::PubComp(a))) => {
                    if let Some(w) = sent.remove(&a.pkid) {
                        let _ = w.send(Ok(()));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    link.send_replace(Link::Down(e.to_string()));
                    for (_, w) in sent.drain() {
                        let _ = w.send(Err(backend(&e)));
                    }
                    // Requests still queued in rumqttc go out after the
                    // reconnect; their waiters stay in order.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Waits for the broker's first answer to the connection (within the
    /// timeout).
    async fn connected(&self) -> Result<(), PubSubError> {
        let mut link = self.link.clone();
        let seen = tokio::time::timeout(self.timeout, async {
            link.wait_for(|l| *l != Link::Pending)
                .await
                .map(|l| l.clone())
        })
        .await;
        match seen {
            Ok(Ok(Link::Up)) => Ok(()),
            Ok(Ok(Link::Down(e))) => Err(backend(format!("cannot connect: {e}"))),
            _ => Err(backend("no answer from the broker within the timeout")),
        }
    }

    async fn publish(&self, topic: &str, data: &[u8]) -> Result<(), PubSubError> {
        let (tx, rx) = oneshot::channel();
        {
            // Queue the waiter and the request together so their orders match.
            let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
            self.client
                .try_publish(topic, self.qos, self.retain, data.to_vec())
                .map_err(backend)?;
            q.push_back(tx);
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(backend("connection closed")),
            Err(_) => Err(backend("no PUBACK within the timeout")),
        }
    }
}

// ------------------------------------------------------------ consuming

/// One handler of a topic in a group.
struct Member {
    id: u64,
    handler: Arc<dyn Handler>,
    inflight: Arc<InFlight>,
    /// Set when its subscription closes: RETRY loops give up (the message
    /// stays unacknowledged in the session).
    closed: Arc<AtomicBool>,
}

type Picked = (Arc<dyn Handler>, Arc<InFlight>, Arc<AtomicBool>);

/// Calls the handler until it answers SUCCESS or DROP (true), retrying
/// RETRY with backoff — MQTT has no negative acknowledgement — unless the
/// subscription closes meanwhile (false: the message stays unacknowledged
/// in the session).
async fn handle_until_done(handler: &dyn Handler, msg: Message, closed: &AtomicBool) -> bool {
    let mut backoff = Duration::from_millis(100);
    loop {
        match handler.handle(msg.clone()).await {
            Ack::Retry => {
                if closed.load(Ordering::Relaxed) {
                    return false;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            _ => return true,
        }
    }
}

/// A consumer group's connection and the handlers of each of its topics.
struct Group {
    client: AsyncClient,
    name: String,
    qos: QoS,
    topics: Mutex<HashMap<String, Vec<Member>>>,
    turn: AtomicUsize,
    stop: watch::Sender<bool>,
    /// SUBSCRIBEs not yet sent, in request order (their SUBACKs are
    /// awaited so nothing published after `subscribe` returns is missed).
    subscribing: Mutex<VecDeque<Waiter>>,
    /// Closed when the connection's task has ended (after `leave`).
    gone: watch::Receiver<()>,
}

impl Group {
    fn filter(&self, topic: &str) -> String {
        format!("$share/{}/{topic}", self.name)
    }

    /// Sends a SUBSCRIBE; the receiver resolves on its SUBACK.
    fn send_subscribe(
        &self,
        topic: &str,
    ) -> Result<oneshot::Receiver<Result<(), PubSubError>>, PubSubError> {
        let (tx, rx) = oneshot::channel();
        let mut q = self.subscribing.lock().unwrap_or_else(|e| e.into_inner());
        self.client
            .try_subscribe(self.filter(topic), self.qos)
            .map_err(backend)?;
        q.push_back(tx);
        Ok(rx)
    }

    /// Connects a group with its first member already in place: a
    /// persistent session's queued messages arrive right after CONNACK, and
    /// one that found no member would stay unacknowledged until the next
    /// reconnect.
    fn start(o: &Options, name: &str, topic: &str, first: Member) -> Arc<Group> {
        let id = o
            .client_id
            .clone()
            .unwrap_or_else(|| format!("{name}-{}", hostname()));
        let mut mo = o.mqtt(&id, o.clean_session, 100);
        mo.set_manual_acks(true);
        let (client, ev) = AsyncClient::new(mo, 1024);
        let (stop, stop_rx) = watch::channel(false);
        let (gone_tx, gone) = watch::channel(());
        let g = Arc::new(Group {
            client,
            name: name.to_string(),
            qos: o.qos,
            topics: Mutex::new(HashMap::from([(topic.to_string(), vec![first])])),
            turn: AtomicUsize::new(0),
            stop,
            subscribing: Mutex::default(),
            gone,
        });
        let events = Group::events(Arc::downgrade(&g), ev, stop_rx);
        tokio::spawn(async move {
            events.await;
            drop(gone_tx);
        });
        g
    }

    /// Waits (bounded) until the connection has left the broker, so that
    /// what is published next queues in the session rather than reaching a
    /// closing connection, and a successor never takes the session over
    /// from it.
    async fn gone(&self) {
        let mut rx = self.gone.clone();
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            while rx.changed().await.is_ok() {}
        })
        .await;
    }

    /// The members to hand a message on `topic` to: one of each
    /// subscription whose filter matches it (the exact topic, or
    /// wildcards), members of one subscription taking turns. Overlapping
    /// filters of one client get one copy from the broker (Mosquitto sends
    /// no duplicates), so each subscription is given it here.
    fn pick(&self, topic: &str) -> Vec<Picked> {
        let t = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        t.iter()
            .filter(|(f, m)| !m.is_empty() && (*f == topic || matches(f, topic)))
            .map(|(_, members)| {
                let m = &members[self.turn.fetch_add(1, Ordering::Relaxed) % members.len()];
                (m.handler.clone(), m.inflight.clone(), m.closed.clone())
            })
            .collect()
    }

    async fn events(g: std::sync::Weak<Group>, mut ev: EventLoop, mut stop: watch::Receiver<bool>) {
        let mut sent: HashMap<u16, Waiter> = HashMap::new();
        loop {
            let polled = tokio::select! {
                p = ev.poll() => p,
                _ = stop.changed() => return Group::leave(&g, &mut ev).await,
            };
            let Some(group) = g.upgrade() else { return };
            match polled {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    // (Re)subscribe: harmless when the session kept them.
                    let topics: Vec<String> = group
                        .topics
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .keys()
                        .cloned()
                        .collect();
                    for t in topics {
                        let _ = group.send_subscribe(&t);
                    }
                }
                Ok(Event::Outgoing(Outgoing::Subscribe(pkid))) => {
                    let w = group
                        .subscribing
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .pop_front();
                    if let Some(w) = w {
                        sent.insert(pkid, w);
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(a))) => {
                    if let Some(w) = sent.remove(&a.pkid) {
                        let _ = w.send(Ok(()));
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let picked = group.pick(&p.topic);
                    if picked.is_empty() {
                        // Nobody here takes it (any more): leave it unacked
                        // for the session to deliver again.
                        continue;
                    }
                    // One PUBACK once every subscription it went to is done.
                    let p = Arc::new(p);
                    let left = Arc::new(AtomicUsize::new(picked.len()));
                    let abandoned = Arc::new(AtomicBool::new(false));
                    for (handler, inflight, closed) in picked {
                        let client = group.client.clone();
                        let (p, left, abandoned) = (p.clone(), left.clone(), abandoned.clone());
                        inflight
                            .spawn(async move {
                                // daprd's component reports the retain flag.
                                let msg = Message {
                                    topic: p.topic.clone(),
                                    data: p.payload.clone(),
                                    metadata: HashMap::from([(
                                        "retained".to_string(),
                                        p.retain.to_string(),
                                    )]),
                                };
                                if !handle_until_done(&*handler, msg, &closed).await {
                                    abandoned.store(true, Ordering::Relaxed);
                                }
                                if left.fetch_sub(1, Ordering::AcqRel) == 1
                                    && !abandoned.load(Ordering::Relaxed)
                                {
                                    if let Err(e) = client.ack(&p).await {
                                        tracing::warn!("mqtt ack failed: {e}");
                                    }
                                }
                            })
                            .await;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(group = %group.name, "mqtt: {e}; reconnecting");
                    for (_, w) in sent.drain() {
                        let _ = w.send(Err(backend(&e)));
                    }
                    drop(group);
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }
}

impl Group {
    /// The last subscriber left: the acknowledgements still queued go out,
    /// then a DISCONNECT, so the broker neither delivers again what was
    /// handled nor waits for a dead socket to keep the session's messages.
    async fn leave(g: &std::sync::Weak<Group>, ev: &mut EventLoop) {
        let Some(group) = g.upgrade() else { return };
        if group.client.try_disconnect().is_err() {
            return;
        }
        drop(group);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match ev.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                    // Deliveries arriving now stay unacknowledged: the
                    // session keeps them for the next subscriber.
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
}

static MEMBER_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

#[async_trait]
impl PubSub for Mqtt {
    fn features(&self) -> Features {
        Features {
            ordered: true,
            durable: !self.o.clean_session && self.o.qos != QoS::AtMostOnce,
        }
    }

    async fn init(&self) -> Result<(), PubSubError> {
        self.publisher.connected().await
    }

    async fn publish(&self, msg: &Message) -> Result<(), PubSubError> {
        valid_topic(&msg.topic)?;
        self.publisher.publish(&msg.topic, &msg.data).await
    }

    async fn subscribe(
        &self,
        req: SubscribeRequest,
        handler: Arc<dyn Handler>,
    ) -> Result<Subscription, PubSubError> {
        valid_filter(&req.topic)?;
        let id = MEMBER_IDS.fetch_add(1, Ordering::Relaxed);
        let inflight = Arc::new(InFlight::new(req.max_in_flight));
        let closed = Arc::new(AtomicBool::new(false));
        let member = Member {
            id,
            handler,
            inflight: inflight.clone(),
            closed: closed.clone(),
        };
        // A group whose last subscriber closed drops its connection (so the
        // broker queues for the session): once it has left, start a new one.
        let leaving = {
            let groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
            groups
                .get(&req.consumer_group)
                .filter(|g| *g.stop.borrow())
                .cloned()
        };
        if let Some(g) = leaving {
            g.gone().await;
        }
        let (group, first) = {
            let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
            let cg = &req.consumer_group;
            match groups.get_mut(cg) {
                None => {
                    let g = Group::start(&self.o, cg, &req.topic, member);
                    groups.insert(cg.clone(), g.clone());
                    (g, true)
                }
                Some(g) => {
                    // `stop` is read under the topics lock, where the last
                    // member's close sets it: a member never joins a group
                    // that is leaving.
                    let mut t = g.topics.lock().unwrap_or_else(|e| e.into_inner());
                    if *g.stop.borrow() {
                        drop(t);
                        *g = Group::start(&self.o, cg, &req.topic, member);
                        (g.clone(), true)
                    } else {
                        let members = t.entry(req.topic.clone()).or_default();
                        members.push(member);
                        let first = members.len() == 1;
                        drop(t);
                        (g.clone(), first)
                    }
                }
            }
        };
        if first {
            let acked = group.send_subscribe(&req.topic)?;
            tokio::time::timeout(self.o.timeout, acked)
                .await
                .map_err(|_| backend("no SUBACK within the timeout"))?
                .map_err(|_| backend("connection closed"))??;
        }
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let topic = req.topic;
        let task = tokio::spawn(async move {
            let _ = stop_rx.wait_for(|s| *s).await;
            closed.store(true, Ordering::Relaxed);
            {
                let mut t = group.topics.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(members) = t.get_mut(&topic) {
                    members.retain(|m| m.id != id);
                    if members.is_empty() {
                        t.remove(&topic);
                    }
                }
            }
            // In-flight deliveries finish and are acknowledged first.
            inflight.drain().await;
            let last = {
                let t = group.topics.lock().unwrap_or_else(|e| e.into_inner());
                // Nobody here takes messages any more: drop the connection
                // so the broker keeps them in the session for the next one.
                t.is_empty() && group.stop.send(true).is_ok()
            };
            if last {
                group.gone().await;
            }
        });
        Ok(Subscription::new(stop_tx, task))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comp(meta: &[(&str, &str)]) -> Component {
        super::super::test_component("pubsub.mqtt3", meta)
    }

    #[test]
    fn metadata() {
        let o = options(&comp(&[("url", "tcp://u:p@broker:1884")])).unwrap();
        assert_eq!((o.host.as_str(), o.port), ("broker", 1884));
        assert_eq!(o.credentials, Some(("u".into(), "p".into())));
        assert!(!o.clean_session && o.qos == QoS::AtLeastOnce && o.tls.is_none());
        let o = options(&comp(&[("url", "mqtt://127.0.0.1"), ("qos", "0")])).unwrap();
        assert_eq!(o.port, 1883);
        assert_eq!(o.qos, QoS::AtMostOnce);
        for bad in [
            vec![],
            vec![("url", "broker:1883")],
            vec![("url", "http://broker")],
            vec![("url", "tcp://broker:x")],
            vec![("url", "tcp://:1883")],
            vec![("url", "tcp://b"), ("qos", "3")],
            vec![("url", "tcp://b"), ("cleanSession", "maybe")],
            vec![("url", "ssl://b")],
        ] {
            assert!(options(&comp(&bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn topic_names() {
        assert!(valid_topic("orders/eu").is_ok());
        for t in ["", "a/+", "a/#", "$SYS/x"] {
            assert!(valid_topic(t).is_err(), "{t}");
        }
    }

    #[test]
    fn topic_filters() {
        for f in ["orders", "home/+/temperature", "home/#", "#", "+", "+/+/x"] {
            assert!(valid_filter(f).is_ok(), "{f}");
        }
        for f in ["", "home/#/x", "home/a+", "home/#x", "$share/g/x", "a\0b"] {
            assert!(valid_filter(f).is_err(), "{f}");
        }
    }

    #[test]
    fn filter_matching() {
        let yes = [
            ("home/+/temperature", "home/kitchen/temperature"),
            ("home/#", "home/kitchen/temperature"),
            ("home/#", "home"),
            ("home/#", "home/x"),
            ("#", "a/b"),
            ("+/b", "a/b"),
            ("a", "a"),
        ];
        for (f, t) in yes {
            assert!(matches(f, t), "{f} {t}");
        }
        let no = [
            ("home/+/temperature", "home/kitchen/humidity"),
            ("home/+/temperature", "home/temperature"),
            ("home/+/temperature", "home/a/b/temperature"),
            ("home/#", "office/x"),
            ("+", "a/b"),
            ("a", "a/b"),
        ];
        for (f, t) in no {
            assert!(!matches(f, t), "{f} {t}");
        }
    }
}
