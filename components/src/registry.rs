//! Builds components from their YAML definition, by `spec.type`.
//!
//! Adding a component is one file implementing the kind's trait plus one line
//! in the kind's table below.

use std::collections::HashMap;
use std::sync::Arc;

use spar_config::Component;

pub use crate::build::{BuildContext, BuildError};

use crate::bindings::{self, Binding};
use crate::configuration::{self, ConfigurationStore};
use crate::conversation::{self, Conversation};
use crate::crypto::{self, CryptoProvider};
use crate::lock::{self, LockStore};
use crate::pubsub::{self, PubSub};
use crate::secrets::{self, SecretStore};
use crate::state::{self, StateStore};

/// A component constructor producing one kind's trait object.
type Builder<T> = fn(&Component, &BuildContext) -> Result<Arc<T>, BuildError>;
type StateBuilder = Builder<dyn StateStore>;
type SecretBuilder = Builder<dyn SecretStore>;
type PubSubBuilder = Builder<dyn PubSub>;
type ConfigurationBuilder = Builder<dyn ConfigurationStore>;
type LockBuilder = Builder<dyn LockStore>;
type ConversationBuilder = Builder<dyn Conversation>;
type CryptoBuilder = Builder<dyn CryptoProvider>;
type BindingBuilder = Builder<dyn Binding>;

/// Component constructors by `spec.type`. Versions are checked by the builder.
pub struct Registry {
    state: HashMap<&'static str, StateBuilder>,
    secrets: HashMap<&'static str, SecretBuilder>,
    pubsub: HashMap<&'static str, PubSubBuilder>,
    configuration: HashMap<&'static str, ConfigurationBuilder>,
    lock: HashMap<&'static str, LockBuilder>,
    conversation: HashMap<&'static str, ConversationBuilder>,
    crypto: HashMap<&'static str, CryptoBuilder>,
    bindings: HashMap<&'static str, BindingBuilder>,
}

impl Default for Registry {
    fn default() -> Self {
        let mut state: HashMap<&'static str, StateBuilder> = HashMap::new();
        state.insert("state.in-memory", state::memory::build);
        state.insert("state.sqlite", state::sqlite::build);
        state.insert("state.redis", state::redis::build);
        state.insert("state.postgresql", state::postgres::build);
        state.insert("state.mysql", state::mysql::build);
        let mut secrets: HashMap<&'static str, SecretBuilder> = HashMap::new();
        secrets.insert("secretstores.local.env", secrets::local_env::build);
        secrets.insert("secretstores.local.file", secrets::local_file::build);
        let mut pubsub: HashMap<&'static str, PubSubBuilder> = HashMap::new();
        pubsub.insert("pubsub.in-memory", pubsub::memory::build);
        pubsub.insert("pubsub.redis", pubsub::redis::build);
        pubsub.insert("pubsub.jetstream", pubsub::jetstream::build);
        pubsub.insert("pubsub.rabbitmq", pubsub::rabbitmq::build);
        pubsub.insert("pubsub.mqtt3", pubsub::mqtt::build);
        let mut configuration: HashMap<&'static str, ConfigurationBuilder> = HashMap::new();
        configuration.insert("configuration.redis", configuration::redis::build);
        configuration.insert("configuration.postgresql", configuration::postgres::build);
        configuration.insert("configuration.postgres", configuration::postgres::build);
        configuration.insert("configuration.sqlite", configuration::sqlite::build);
        let mut lock: HashMap<&'static str, LockBuilder> = HashMap::new();
        lock.insert("lock.redis", lock::redis::build);
        lock.insert("lock.sqlite", lock::sqlite::build);
        lock.insert("lock.in-memory", lock::memory::build);
        lock.insert("lock.postgresql", lock::postgres::build);
        let mut conversation: HashMap<&'static str, ConversationBuilder> = HashMap::new();
        conversation.insert("conversation.echo", conversation::echo::build);
        conversation.insert("conversation.openai", conversation::openai::build);
        let mut crypto: HashMap<&'static str, CryptoBuilder> = HashMap::new();
        crypto.insert("crypto.dapr.localstorage", crypto::localstorage::build);
        crypto.insert("crypto.dapr.jwks", crypto::jwks::build);
        let mut bindings: HashMap<&'static str, BindingBuilder> = HashMap::new();
        bindings.insert("bindings.cron", bindings::cron::build);
        bindings.insert("bindings.http", bindings::http::build);
        bindings.insert("bindings.localstorage", bindings::localstorage::build);
        bindings.insert("bindings.redis", bindings::redis::build);
        bindings.insert("bindings.postgresql", bindings::sql::build_postgres);
        bindings.insert("bindings.postgres", bindings::sql::build_postgres);
        bindings.insert("bindings.mysql", bindings::sql::build_mysql);
        bindings.insert("bindings.mqtt3", bindings::broker::build_mqtt);
        bindings.insert("bindings.rabbitmq", bindings::broker::build_rabbitmq);
        bindings.insert("bindings.smtp", bindings::smtp::build);
        Registry {
            state,
            secrets,
            pubsub,
            configuration,
            lock,
            conversation,
            crypto,
            bindings,
        }
    }
}

impl Registry {
    pub fn is_state(&self, ty: &str) -> bool {
        self.state.contains_key(ty)
    }

    /// Whether a component of this `spec.type` and `spec.version` can be
    /// built (`spar validate`; start-up says the same through `build_*`).
    pub fn check(&self, ty: &str, version: &str) -> Result<(), BuildError> {
        if !self.types().contains(&ty) {
            return Err(BuildError::UnknownType(
                ty.to_string(),
                self.types().join(", "),
            ));
        }
        if !matches!(version.to_ascii_lowercase().as_str(), "" | "v0" | "v1") {
            return Err(BuildError::UnknownVersion(
                ty.to_string(),
                version.to_string(),
            ));
        }
        Ok(())
    }

    /// Every `spec.type` this registry builds, sorted.
    pub fn types(&self) -> Vec<&'static str> {
        let mut all: Vec<&'static str> = self
            .state
            .keys()
            .chain(self.secrets.keys())
            .chain(self.pubsub.keys())
            .chain(self.configuration.keys())
            .chain(self.lock.keys())
            .chain(self.conversation.keys())
            .chain(self.crypto.keys())
            .chain(self.bindings.keys())
            .copied()
            .collect();
        all.sort_unstable();
        all
    }

    pub fn build_secret_store(
        &self,
        c: &Component,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn SecretStore>, BuildError> {
        build(&self.secrets, c, ctx)
    }

    pub fn build_pubsub(
        &self,
        c: &Component,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn PubSub>, BuildError> {
        build(&self.pubsub, c, ctx)
    }

    pub fn build_configuration(
        &self,
        c: &Component,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn ConfigurationStore>, BuildError> {
        build(&self.configuration, c, ctx)
    }

    pub fn build_lock(
        &self,
        c: &Component,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn LockStore>, BuildError> {
        build(&self.lock, c, ctx)
    }

    pub fn build_conversation(
        &self,
        c: &Component,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Conversation>, BuildError> {
        build(&self.conversation, c, ctx)
    }

    pub fn build_crypto(
        &self,
        c: &Component,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn CryptoProvider>, BuildError> {
        build(&self.crypto, c, ctx)
    }

    pub fn build_binding(
        &self,
        c: &Component,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Binding>, BuildError> {
        build(&self.bindings, c, ctx)
    }

    pub fn build_state(
        &self,
        c: &Component,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn StateStore>, BuildError> {
        let store = build(&self.state, c, ctx)?;
        state::encryption::wrap_if_configured(c, store)
    }
}

/// Looks `spec.type` up in one kind's table and runs its builder.
fn build<T: ?Sized>(
    table: &HashMap<&'static str, Builder<T>>,
    c: &Component,
    ctx: &BuildContext,
) -> Result<Arc<T>, BuildError> {
    match table.get(c.spec.type_.as_str()) {
        // Every spar component is its type's first version; "" and v0 mean
        // the same to daprd.
        Some(_)
            if !matches!(
                c.spec.version.to_ascii_lowercase().as_str(),
                "" | "v0" | "v1"
            ) =>
        {
            Err(BuildError::UnknownVersion(
                c.spec.type_.clone(),
                c.spec.version.clone(),
            ))
        }
        Some(b) => b(c, ctx),
        None => {
            let mut known: Vec<_> = table.keys().copied().collect();
            known.sort();
            Err(BuildError::UnknownType(
                c.spec.type_.clone(),
                known.join(", "),
            ))
        }
    }
}
