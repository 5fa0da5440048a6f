//! Builds every component from the loaded YAML, in dependency order: secret
//! stores first, then everything else with its `secretKeyRef`s resolved
//! through its `auth.secretStore` (default: the environment, as a
//! `secretstores.local.env` store) and its `envRef`s from the environment.
//! Each is built, then initialised (its backend reached) within its
//! `spec.initTimeout` (default 5 s), as daprd does. A component that fails —
//! an unknown type included — is reported with its file and reason: at
//! start-up that stops the sidecar unless the component says
//! `ignoreErrors: true` (then it is logged, listed in the metadata API and
//! skipped).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use spar_components::secrets::local_env::EnvStore;
use spar_components::secrets::SecretStore;
use spar_components::BuildContext;
use spar_components::Registry;
use spar_config::{Component, Configuration, MetaValue};
use spar_filters::handlers::secrets::{Access, SecretStores};
use spar_filters::handlers::state::{KeyPrefix, StateStores};
use spar_filters::runtime::ComponentInfo;

#[derive(Default)]
pub struct Loaded {
    pub state: StateStores,
    pub secrets: SecretStores,
    pub infos: Vec<ComponentInfo>,
    /// (component, reason)
    pub failed: Vec<(String, String)>,
    /// Failures of components without `ignoreErrors`, each naming the
    /// component, its type and file: fatal at start-up, as in daprd.
    pub fatal: Vec<String>,
    pub pubsubs: spar_filters::handlers::pubsub::PubSubs,
    pub configuration: spar_filters::handlers::configuration::ConfigurationStores,
    pub locks: spar_filters::handlers::lock::LockStores,
    pub conversations: spar_filters::handlers::conversation::Conversations,
    pub crypto: spar_filters::handlers::crypto::CryptoProviders,
    pub bindings: spar_filters::handlers::bindings::Bindings,
    /// Secret stores by name, for later `secretKeyRef`s (HTTPEndpoint headers).
    pub secret_stores: HashMap<String, Arc<dyn SecretStore>>,
}

fn info(c: &Component, capabilities: Vec<String>) -> ComponentInfo {
    ComponentInfo {
        name: c.name().to_string(),
        type_: c.spec.type_.clone(),
        version: c.spec.version.clone(),
        capabilities,
    }
}

/// `spec.secrets.scopes` for one store.
fn access(config: Option<&Configuration>, store: &str) -> Access {
    let Some(scope) = config
        .and_then(|c| c.spec.secrets.as_ref())
        .and_then(|s| s.scopes.iter().find(|s| s.store_name == store))
    else {
        return Access::default();
    };
    Access {
        default_deny: scope.default_access.eq_ignore_ascii_case("deny"),
        allowed: scope.allowed_secrets.iter().cloned().collect(),
        denied: scope.denied_secrets.iter().cloned().collect(),
    }
}

/// A copy of `c` as its builder reads it: every `secretKeyRef` and
/// `envRef` replaced by its value, then daprd's template tags expanded.
async fn resolve(
    c: &Component,
    stores: &HashMap<String, Arc<dyn SecretStore>>,
    app_id: &str,
    namespace: Option<&str>,
) -> Result<Component, String> {
    let mut out = c.clone();
    if !c.secret_refs().is_empty() || c.spec.metadata.iter().any(|m| m.env_ref.is_some()) {
        resolve_items(&mut out.spec.metadata, c.auth.as_ref(), stores).await?;
    }
    for item in &mut out.spec.metadata {
        if let Some(v) = &mut item.value {
            if v.0.contains('{') {
                v.0 = expand_tags(&v.0, app_id, namespace)
                    .map_err(|e| format!("metadata {}: {e}", item.name))?;
            }
        }
    }
    Ok(out)
}

/// daprd's template tags in metadata values: `{uuid}` (a new one each
/// time), `{podName}` (`POD_NAME`), `{namespace}` (`namespace.appID`),
/// `{appID}` — so `consumerID: "{appID}-{uuid}"` means what it does there.
fn expand_tags(v: &str, app_id: &str, namespace: Option<&str>) -> Result<String, String> {
    let mut v = v.to_string();
    while v.contains("{uuid}") {
        v = v.replacen("{uuid}", &uuid::Uuid::new_v4().to_string(), 1);
    }
    if v.contains("{podName}") {
        let pod = std::env::var("POD_NAME")
            .ok()
            .filter(|p| !p.is_empty())
            .ok_or("refers to {podName} but POD_NAME is not set")?;
        v = v.replace("{podName}", &pod);
    }
    v = v.replace(
        "{namespace}",
        &format!("{}.{app_id}", namespace.unwrap_or_default()),
    );
    Ok(v.replace("{appID}", app_id))
}

/// Replaces every `secretKeyRef` in `items` with the secret's value, read
/// from `auth.secretStore` (default: the environment).
async fn resolve_items(
    items: &mut [spar_config::MetadataItem],
    auth: Option<&spar_config::ComponentAuth>,
    stores: &HashMap<String, Arc<dyn SecretStore>>,
) -> Result<(), String> {
    let env: Arc<dyn SecretStore> = Arc::new(EnvStore::default());
    let (store_name, store) = match auth
        .map(|a| a.secret_store.as_str())
        .filter(|s| !s.is_empty())
    {
        Some(name) => (
            name.to_string(),
            stores
                .get(name)
                .cloned()
                .ok_or_else(|| format!("auth.secretStore {name:?} is not a loaded secret store"))?,
        ),
        None => ("the environment (default)".to_string(), env),
    };
    let md = BTreeMap::new();
    for item in items.iter_mut() {
        // `envRef` fills a missing value from the environment, with daprd's
        // deny list (no `DAPR_*`, no `APP_API_TOKEN`).
        if let Some(var) = item.env_ref.clone() {
            if item.value.as_ref().is_none_or(|v| v.0.is_empty()) {
                if !env_allowed(&var) {
                    return Err(format!(
                        "metadata {}: envRef {var:?} names a variable components may not read",
                        item.name
                    ));
                }
                item.value = Some(MetaValue(std::env::var(&var).unwrap_or_default()));
            }
            continue;
        }
        // The reference stays beside the value: state encryption names its
        // keys after the secret they came from, as daprd does.
        let Some(r) = item.secret_key_ref.clone() else {
            continue;
        };
        let secret = store.get(&r.name, &md).await.map_err(|e| {
            format!(
                "metadata {}: secret {:?} from {store_name}: {e}",
                item.name, r.name
            )
        })?;
        let value = secret.get(r.key()).ok_or_else(|| {
            format!(
                "metadata {}: secret {:?} in {store_name} has no key {:?}",
                item.name,
                r.name,
                r.key()
            )
        })?;
        item.value = Some(MetaValue(value.clone()));
    }
    Ok(())
}

/// Whether a component may read this environment variable through
/// `envRef` (daprd's rule: not the sidecar's own `DAPR_*` settings nor
/// `APP_API_TOKEN`; with `DAPR_ENV_KEYS` set, only the names it lists).
fn env_allowed(var: &str) -> bool {
    let v = var.to_ascii_uppercase();
    if v.is_empty() || v == "APP_API_TOKEN" || v.starts_with("DAPR_") || v.contains(' ') {
        return false;
    }
    match std::env::var("DAPR_ENV_KEYS") {
        Ok(list) if !list.is_empty() => list.split(' ').any(|k| k == v),
        _ => true,
    }
}

/// How long a component may take to start: `spec.initTimeout`, else
/// daprd's 5 s (an unreadable value falls back to it, as in daprd).
fn init_timeout(c: &Component) -> std::time::Duration {
    c.spec
        .init_timeout
        .as_deref()
        .and_then(|t| spar_config::parse_duration(t).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(std::time::Duration::from_secs(5))
}

/// Runs a component's `init` within its timeout.
async fn init_within<E: std::fmt::Display>(
    c: &Component,
    init: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), String> {
    let t = init_timeout(c);
    match tokio::time::timeout(t, init).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("init: {e}")),
        Err(_) => Err(format!(
            "init did not finish within {t:?} (spec.initTimeout)"
        )),
    }
}

/// `state.redis/v1` (daprd's log name for a component's type).
fn log_type(c: &Component) -> String {
    let v = if c.spec.version.is_empty() {
        "v1"
    } else {
        &c.spec.version
    };
    format!("{}/{v}", c.spec.type_)
}

/// `HTTPEndpoint` resources with their headers' secrets resolved. One that
/// fails is reported and skipped.
pub async fn http_endpoints(
    list: &[spar_config::HttpEndpoint],
    stores: &HashMap<String, Arc<dyn SecretStore>>,
    failed: &mut Vec<(String, String)>,
) -> spar_filters::handlers::endpoints::Endpoints {
    use spar_filters::handlers::endpoints::{BaseUrl, Endpoint, Endpoints};
    let mut out = HashMap::new();
    for h in list {
        let name = h.metadata.name.clone();
        let mut headers = h.spec.headers.clone();
        let built = match resolve_items(&mut headers, h.auth.as_ref(), stores).await {
            Err(e) => Err(e),
            Ok(()) => BaseUrl::parse(&h.spec.base_url)
                .ok_or_else(|| format!("spec.baseUrl {:?} is not a valid URL", h.spec.base_url)),
        };
        match built {
            Ok(base) => {
                let headers: Vec<(String, String)> = headers
                    .into_iter()
                    .map(|i| (i.name, i.value.map(|v| v.0).unwrap_or_default()))
                    .collect();
                tracing::info!(endpoint = %name, base_url = %h.spec.base_url, "HTTP endpoint loaded");
                out.insert(
                    name,
                    Endpoint {
                        base,
                        headers: headers.into(),
                    },
                );
            }
            Err(e) => {
                tracing::error!(endpoint = %name, "HTTP endpoint failed to load: {e}");
                failed.push((name, e));
            }
        }
    }
    Endpoints::new(out)
}

/// What a reload starts from: the component definitions in service and
/// what was built from them. A component whose definition is unchanged is
/// carried over as it runs (its connections, its subscriptions' broker)
/// instead of being built again.
pub struct Prev<'a> {
    pub specs: &'a [Component],
    pub live: &'a spar_filters::runtime::Live,
}

impl Prev<'_> {
    fn unchanged(&self, c: &Component) -> Option<ComponentInfo> {
        if !self.specs.iter().any(|p| p == c) {
            return None;
        }
        self.live
            .components
            .iter()
            .find(|i| i.name == c.name())
            .cloned()
    }
}

pub async fn load(
    components: &[Component],
    config: Option<&Configuration>,
    app_id: &str,
    namespace: Option<&str>,
    ctx: &BuildContext,
    prev: Option<&Prev<'_>>,
) -> Loaded {
    let registry = Registry::default();
    let mut out = Loaded::default();
    let kept = |c: &Component| prev.and_then(|p| p.unchanged(c).map(|i| (p.live, i)));

    // Kinds spar has no building block for yet, and unknown types, fail
    // like any other component (daprd: "incorrect type").
    for c in components {
        let kind = c.kind_prefix();
        if matches!(
            kind,
            "secretstores"
                | "state"
                | "pubsub"
                | "configuration"
                | "lock"
                | "conversation"
                | "crypto"
                | "bindings"
        ) {
            continue;
        }
        if kind == "middleware" {
            if let Err(e) = spar_filters::builtin::middleware::build(c) {
                fail(&mut out, c, e);
            } else {
                out.infos.push(info(c, vec![]));
            }
            continue;
        }
        fail(
            &mut out,
            c,
            format!(
                "unknown component type {:?} (supported: {}, {})",
                c.spec.type_,
                registry.types().join(", "),
                spar_filters::builtin::middleware::types().join(", ")
            ),
        );
    }

    let mut secret_stores: HashMap<String, Arc<dyn SecretStore>> = HashMap::new();
    for c in components
        .iter()
        .filter(|c| c.kind_prefix() == "secretstores")
    {
        if let Some((live, i)) = kept(c) {
            if let Some(s) = live.secrets.get(c.name()).cloned() {
                secret_stores.insert(c.name().to_string(), s.clone());
                out.secret_stores.insert(c.name().to_string(), s.clone());
                out.secrets
                    .insert(c.name().to_string(), s, access(config, c.name()));
                out.infos.push(i);
                continue;
            }
        }
        let built = match resolve(c, &secret_stores, app_id, namespace).await {
            Ok(c) => registry
                .build_secret_store(&c, ctx)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match built {
            Ok(s) => {
                secret_stores.insert(c.name().to_string(), s.clone());
                out.secret_stores.insert(c.name().to_string(), s.clone());
                out.secrets
                    .insert(c.name().to_string(), s, access(config, c.name()));
                out.infos.push(info(c, vec![]));
                tracing::info!(component = c.name(), r#type = %c.spec.type_, "component loaded");
            }
            Err(e) => fail(&mut out, c, e),
        }
    }

    for c in components.iter().filter(|c| c.kind_prefix() == "state") {
        if let Some((live, i)) = kept(c) {
            if let Some((store, prefix)) = live.state.entry(c.name()) {
                out.state.insert(c.name().to_string(), store, prefix);
                out.infos.push(i);
                continue;
            }
        }
        let c = match resolve(c, &secret_stores, app_id, namespace).await {
            Ok(c) => c,
            Err(e) => {
                fail(&mut out, c, e);
                continue;
            }
        };
        let prefix = match KeyPrefix::from_strategy(
            c.meta("keyPrefix").as_deref(),
            app_id,
            c.name(),
            namespace,
        ) {
            Ok(p) => p,
            Err(e) => {
                fail(&mut out, &c, format!("metadata keyPrefix: {e}"));
                continue;
            }
        };
        let built = match registry.build_state(&c, ctx) {
            Ok(store) => init_within(&c, store.init()).await.map(|()| store),
            Err(e) => Err(e.to_string()),
        };
        match built {
            Ok(store) => {
                let caps = store
                    .features()
                    .names()
                    .into_iter()
                    .map(String::from)
                    .collect();
                out.infos.push(info(&c, caps));
                out.state.insert(c.name().to_string(), store, prefix);
                tracing::info!(component = c.name(), r#type = %c.spec.type_, "component loaded");
            }
            Err(e) => fail(&mut out, &c, e),
        }
    }

    for c in components.iter().filter(|c| c.kind_prefix() == "pubsub") {
        if let Some((live, i)) = kept(c) {
            if let Some(p) = live.pubsubs.get(c.name()).cloned() {
                out.pubsubs.insert_shared(c.name().to_string(), p);
                out.infos.push(i);
                continue;
            }
        }
        let c = match resolve(c, &secret_stores, app_id, namespace).await {
            Ok(c) => c,
            Err(e) => {
                fail(&mut out, c, e);
                continue;
            }
        };
        let built = match registry.build_pubsub(&c, ctx) {
            Ok(broker) => init_within(&c, broker.init()).await.map(|()| broker),
            Err(e) => Err(e.to_string()),
        };
        match built {
            Ok(broker) => {
                use spar_filters::handlers::pubsub::{PubSubComponent, Scopes};
                let meta = c.metadata_map();
                out.infos.push(info(&c, vec![]));
                out.pubsubs.insert(
                    c.name().to_string(),
                    PubSubComponent {
                        broker,
                        scopes: Scopes::from_metadata(&meta, app_id),
                        consumer_group: c
                            .meta("consumerID")
                            .filter(|v| !v.is_empty())
                            .unwrap_or_else(|| app_id.to_string()),
                    },
                );
                tracing::info!(component = c.name(), r#type = %c.spec.type_, "component loaded");
            }
            Err(e) => fail(&mut out, &c, e),
        }
    }
    // The kinds with nothing special at load time share one loader.
    let cx = KindCx {
        components,
        prev,
        secret_stores: &secret_stores,
        app_id,
        namespace,
    };
    let none = |_: &Component| Ok(());
    for (name, s, ()) in cx
        .load(
            &mut out,
            "configuration",
            |live, n| live.configuration.get(n).cloned().map(|s| (s, ())),
            none,
            |c| registry.build_configuration(c, ctx),
            |s| async move { s.init().await },
        )
        .await
    {
        out.configuration.insert(name, s);
    }
    let lock_prefix = |c: &Component| {
        spar_filters::handlers::lock::LockPrefix::from_strategy(
            c.meta("keyPrefix").as_deref(),
            app_id,
            c.name(),
        )
        .map_err(|e| format!("failed to save lock keyprefix: {e}"))
    };
    for (name, s, prefix) in cx
        .load(
            &mut out,
            "lock",
            |live, n| live.locks.entry(n),
            lock_prefix,
            |c| registry.build_lock(c, ctx),
            |s| async move { s.init().await },
        )
        .await
    {
        out.locks.insert(name, s, prefix);
    }
    for (name, s, ()) in cx
        .load(
            &mut out,
            "conversation",
            |live, n| live.conversations.get(n).cloned().map(|s| (s, ())),
            none,
            |c| registry.build_conversation(c, ctx),
            |s| async move { s.init().await },
        )
        .await
    {
        out.conversations.insert(name, s);
    }
    for (name, s, ()) in cx
        .load(
            &mut out,
            "crypto",
            |live, n| live.crypto.get(n).cloned().map(|s| (s, ())),
            none,
            |c| registry.build_crypto(c, ctx),
            |s| async move { s.init().await },
        )
        .await
    {
        out.crypto.insert(name, s);
    }
    // A binding keeps its `direction` (which sides daprd would use) and
    // the app route its input events go to (`route`, else its name).
    let binding_sides = |c: &Component| {
        Ok((
            spar_components::bindings::Direction::from_metadata(c.meta("direction").as_deref()),
            c.meta("route").unwrap_or_else(|| c.name().to_string()),
        ))
    };
    for (name, binding, (direction, route)) in cx
        .load(
            &mut out,
            "bindings",
            |live, n| {
                live.bindings
                    .get(n)
                    .map(|e| (e.binding.clone(), (e.direction, e.route.clone())))
            },
            binding_sides,
            |c| registry.build_binding(c, ctx),
            |s| async move { s.init().await },
        )
        .await
    {
        use spar_filters::handlers::bindings::BindingEntry;
        out.bindings.insert(
            name,
            BindingEntry {
                binding,
                direction,
                route,
            },
        );
    }
    out
}

/// What every kind's loading shares: the definitions, the previous live
/// set, and what resolving a definition needs.
struct KindCx<'a> {
    components: &'a [Component],
    prev: Option<&'a Prev<'a>>,
    secret_stores: &'a HashMap<String, Arc<dyn SecretStore>>,
    app_id: &'a str,
    namespace: Option<&'a str>,
}

impl KindCx<'_> {
    /// Loads the components of `kind` (a `spec.type` prefix): an unchanged
    /// one is carried over from the previous live set (`kept`); any other
    /// gets its secrets resolved, what its collection keeps beside it
    /// (`prepare`), then is built and `init`ed within its initTimeout.
    /// Failures go to `out` as for every component. Returns what loaded, by
    /// name, for the kind's collection.
    async fn load<T: ?Sized, X, F, E>(
        &self,
        out: &mut Loaded,
        kind: &str,
        kept: impl Fn(&spar_filters::runtime::Live, &str) -> Option<(Arc<T>, X)>,
        prepare: impl Fn(&Component) -> Result<X, String>,
        build: impl Fn(&Component) -> Result<Arc<T>, spar_components::build::BuildError>,
        init: impl Fn(Arc<T>) -> F,
    ) -> Vec<(String, Arc<T>, X)>
    where
        F: std::future::Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let mut loaded = Vec::new();
        for c in self.components.iter().filter(|c| c.kind_prefix() == kind) {
            let carried = self.prev.and_then(|p| {
                let info = p.unchanged(c)?;
                Some((kept(p.live, c.name())?, info))
            });
            if let Some(((s, x), i)) = carried {
                out.infos.push(i);
                loaded.push((c.name().to_string(), s, x));
                continue;
            }
            let c = match resolve(c, self.secret_stores, self.app_id, self.namespace).await {
                Ok(c) => c,
                Err(e) => {
                    fail(out, c, e);
                    continue;
                }
            };
            let x = match prepare(&c) {
                Ok(x) => x,
                Err(e) => {
                    fail(out, &c, e);
                    continue;
                }
            };
            let built = match build(&c) {
                Ok(s) => init_within(&c, init(s.clone())).await.map(|()| s),
                Err(e) => Err(e.to_string()),
            };
            match built {
                Ok(s) => {
                    // daprd lists no capabilities for these kinds.
                    out.infos.push(info(&c, vec![]));
                    tracing::info!(component = c.name(), r#type = %c.spec.type_, "component loaded");
                    loaded.push((c.name().to_string(), s, x));
                }
                Err(e) => fail(out, &c, e),
            }
        }
        loaded
    }
}

/// Records a component that failed to load: fatal at start-up unless it
/// says `ignoreErrors`, and listed in the metadata API either way.
fn fail(out: &mut Loaded, c: &Component, e: String) {
    let what = format!(
        "component {} ({}) in {}: {e}",
        c.name(),
        log_type(c),
        c.source.display()
    );
    if c.spec.ignore_errors {
        tracing::error!(
            component = c.name(),
            "ignoring error processing {what} (ignoreErrors)"
        );
    } else {
        tracing::error!(component = c.name(), "{what}");
        out.fatal.push(what);
    }
    out.failed.push((c.name().to_string(), e));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_tags() {
        let v = expand_tags("{appID}-{namespace}-{uuid}-{uuid}", "orders", Some("prod")).unwrap();
        let parts: Vec<&str> = v.splitn(3, '-').collect();
        assert_eq!(&parts[..2], ["orders", "prod.orders"]);
        assert_eq!(parts[2].len(), 36 * 2 + 1);
        assert_ne!(&parts[2][..36], &parts[2][37..]);
        assert_eq!(expand_tags("{namespace}", "a", None).unwrap(), ".a");
        std::env::remove_var("POD_NAME");
        assert!(expand_tags("{podName}", "a", None).is_err());
        assert!(env_allowed("REDIS_HOST"));
        assert!(!env_allowed("DAPR_API_TOKEN") && !env_allowed("app_api_token"));
    }
}
