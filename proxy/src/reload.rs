//! Hot reload of `--resources-path` (components, resiliency, subscriptions,
//! HTTP endpoints) and of the `--config` Configuration, without a restart.
//!
//! The files are polled once a second (size and modification time;
//! `--hot-reload-reconcile-interval` sets another period). A
//! changed file is parsed alone: if it is broken it is refused with a log
//! line naming it, and what it held before stays in service. Otherwise a
//! new live set is built — unchanged components carried over as they run,
//! a changed component that fails to build keeps its previous instance —
//! and swapped in atomically with a new filter chain. Calls already running
//! finish on the set they started with. Subscriptions are restarted
//! (in-flight deliveries drain first), input bindings with them, only when
//! a pub/sub or binding component or a subscription changed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use spar_config::{Configuration, Resources};
use spar_filters::{Chain, Runtime};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::boot::Builder;

type Stamp = Option<(SystemTime, u64)>;

fn stamp(p: &PathBuf) -> Stamp {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The running subscriptions, restarted as one: the app's, the sidecar's
/// own outbox ones and the input bindings' readers.
struct Subscriber {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Subscriber {
    fn start(rt: &Arc<Runtime>, subs: Vec<spar_config::Subscription>) -> Self {
        let (stop, rx) = watch::channel(false);
        let (app, outbox, inputs) = (
            crate::subscriber::run(rt.clone(), subs, rx.clone()),
            crate::subscriber::outbox::run(rt.clone(), rx.clone()),
            crate::input_bindings::run(rt.clone(), rx),
        );
        let task = tokio::spawn(async move {
            tokio::join!(app, outbox, inputs);
        });
        Subscriber { stop, task }
    }

    /// Closes every subscription; in-flight deliveries finish first.
    async fn stop(self, grace: Duration) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(grace, self.task).await;
    }
}

pub struct Reloader {
    pub rt: Arc<Runtime>,
    pub chain: Chain,
    pub builder: Arc<Builder>,
    pub dirs: Vec<PathBuf>,
    /// The `--config` files, merged in order.
    pub config_paths: Vec<PathBuf>,
    /// How often the files are looked at.
    pub poll: Duration,
    /// Flips when shutdown is blocked: subscriptions stop and nothing is
    /// reloaded any more.
    pub quiet: watch::Receiver<bool>,
    /// What is in service (scoped to this app).
    pub resources: Resources,
    pub config: Option<Configuration>,
    pub grace: Duration,
}

struct State {
    /// The last good parse of each file.
    files: BTreeMap<PathBuf, Resources>,
    stamps: BTreeMap<PathBuf, Stamp>,
    config_stamps: Vec<Stamp>,
}

impl Reloader {
    /// Runs the subscriptions and, unless turned off, watches for changes
    /// until `stop`; then closes the subscriptions.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut sub = Subscriber::start(&self.rt, self.resources.subscriptions.clone());
        let enabled = !self.dirs.is_empty() && !self.hot_reload_disabled();
        let mut st = self.scan_all();
        let mut quiet = self.quiet.clone();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.poll), if enabled => {}
                _ = stop.changed() => break,
                _ = quiet.changed() => {
                    if *quiet.borrow() {
                        sub.stop(self.grace).await;
                        crate::signals::stopped(&mut stop).await;
                        return;
                    }
                }
            }
            if *stop.borrow() {
                break;
            }
            if let Some(restart) = self.check(&mut st).await {
                if restart {
                    sub.stop(self.grace).await;
                    self.rt.clear_started_subscriptions();
                    sub = Subscriber::start(&self.rt, self.resources.subscriptions.clone());
                    tracing::info!("subscriptions restarted after reload");
                }
            }
        }
        sub.stop(self.grace).await;
    }

    /// `features: [{name: HotReload, enabled: false}]` turns it off.
    fn hot_reload_disabled(&self) -> bool {
        self.config.as_ref().is_some_and(|c| {
            c.spec
                .features
                .iter()
                .any(|f| f.name == "HotReload" && !f.enabled)
        })
    }

    fn scan_all(&self) -> State {
        let mut files = BTreeMap::new();
        let mut stamps = BTreeMap::new();
        for f in spar_config::resource_files(&self.dirs) {
            stamps.insert(f.clone(), stamp(&f));
            // Start-up loaded them all successfully.
            if let Ok(r) = Resources::load_file(&f) {
                files.insert(f, r);
            }
        }
        State {
            files,
            stamps,
            config_stamps: self.config_paths.iter().map(stamp).collect(),
        }
    }

    /// Applies what changed since the last look. `Some(restart)` when a new
    /// set went into service; `restart` says whether subscriptions must be
    /// restarted.
    async fn check(&mut self, st: &mut State) -> Option<bool> {
        let now = spar_config::resource_files(&self.dirs);
        let mut changed = false;
        for f in &now {
            let s = stamp(f);
            if st.stamps.get(f) == Some(&s) {
                continue;
            }
            st.stamps.insert(f.clone(), s);
            changed = true;
            match Resources::load_file(f) {
                Ok(r) => {
                    tracing::info!(file = %f.display(), "resource file changed");
                    st.files.insert(f.clone(), r);
                }
                Err(e) => tracing::error!(
                    file = %f.display(),
                    "hot reload: file refused, its previous version stays in service: {e}"
                ),
            }
        }
        let gone: Vec<PathBuf> = st
            .stamps
            .keys()
            .filter(|f| !now.contains(f))
            .cloned()
            .collect();
        for f in gone {
            tracing::info!(file = %f.display(), "resource file removed");
            st.stamps.remove(&f);
            st.files.remove(&f);
            changed = true;
        }
        let mut config = self.config.clone();
        let stamps: Vec<Stamp> = self.config_paths.iter().map(stamp).collect();
        if !self.config_paths.is_empty() && stamps != st.config_stamps {
            st.config_stamps = stamps;
            match spar_config::load_configurations(&self.config_paths) {
                Ok(c) => {
                    tracing::info!("configuration changed");
                    config = Some(c);
                    changed = true;
                }
                Err(e) => tracing::error!(
                    "hot reload: configuration refused, the previous one stays in service: {e}"
                ),
            }
        }
        if !changed {
            return None;
        }
        let resources = match Resources::merge(st.files.values()) {
            Ok(r) => r.for_app(&self.rt.app_id),
            Err(e) => {
                tracing::error!("hot reload refused, the previous resources stay in service: {e}");
                return None;
            }
        };
        if resources == self.resources && config == self.config {
            return None;
        }
        self.apply(resources, config).await
    }

    async fn apply(&mut self, resources: Resources, config: Option<Configuration>) -> Option<bool> {
        let old = self.rt.live();
        let same_tracing = config.as_ref().and_then(|c| c.spec.tracing.as_ref())
            == self.config.as_ref().and_then(|c| c.spec.tracing.as_ref());
        let prev = crate::components::Prev {
            specs: &self.resources.components,
            live: &old,
        };
        let mut live = match self
            .builder
            .live(
                &resources,
                config.as_ref(),
                Some(&prev),
                same_tracing.then(|| old.tracer.clone()),
            )
            .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("hot reload refused, the previous version stays in service: {e}");
                return None;
            }
        };
        // A changed component that fails to build keeps running as it was.
        live.failed_components.retain(|(name, why)| {
            let kept = if let Some((s, p)) = old.state.entry(name) {
                live.state.insert(name.clone(), s, p);
                true
            } else if let Some(p) = old.pubsubs.get(name).cloned() {
                live.pubsubs.insert_shared(name.clone(), p);
                true
            } else if let Some(b) = old.bindings.get(name).cloned() {
                live.bindings.insert(name.clone(), b);
                true
            } else {
                false
            };
            if kept {
                tracing::error!(component = %name, "hot reload: component refused, its previous version stays in service: {why}");
                if let Some(i) = old.components.iter().find(|i| &i.name == name) {
                    live.components.push(i.clone());
                }
            }
            !kept
        });
        let pubsub_specs = |r: &Resources| -> Vec<spar_config::Component> {
            r.components
                .iter()
                .filter(|c| matches!(c.kind_prefix(), "pubsub" | "bindings"))
                .cloned()
                .collect()
        };
        let restart = pubsub_specs(&resources) != pubsub_specs(&self.resources)
            || resources.subscriptions != self.resources.subscriptions
            || live.outbox != old.outbox;
        let chain = match self
            .builder
            .chain(config.as_ref(), &resources, &self.rt, &live)
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("hot reload refused, the previous version stays in service: {e}");
                return None;
            }
        };
        self.rt.replace_live(live);
        self.chain.replace(&chain);
        let live = self.rt.live();
        // Subscriptions to a configuration store that is gone end (their
        // streams complete); those of a changed one go on with the
        // instance they started on.
        self.rt
            .configuration_subscriptions
            .retain_stores(|s| live.configuration.get(s).is_some());
        let names: Vec<&str> = live.components.iter().map(|c| c.name.as_str()).collect();
        tracing::info!(components = ?names, "hot reload applied");
        self.resources = resources;
        self.config = config;
        Some(restart)
    }
}
