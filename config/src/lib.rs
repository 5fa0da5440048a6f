//! Dapr's YAML resources, typed and validated: Component, Configuration,
//! Resiliency, Subscription (v1alpha1 and v2alpha1) and HTTPEndpoint.
//!
//! [`Resources::load_dirs`] reads `--resources-path` directories,
//! [`load_configurations`] the `--config` files. Errors name the file, the
//! resource (`Kind/name`) and the field, and all of them are reported at once.
//! `secretKeyRef` values stay references; resolving them is the runtime's job.

mod component;
mod configuration;
mod duration;
mod error;
mod expand;
mod http_endpoint;
mod load;
mod meta;
mod resiliency;
pub mod schedule;
mod subscription;

pub use component::{Component, ComponentAuth, ComponentSpec, KINDS};
pub use configuration::*;
pub use duration::{parse_duration, parse_metadata_duration};
pub use error::{ConfigError, ConfigErrors};
pub use http_endpoint::{HttpEndpoint, HttpEndpointSpec};
pub use load::{load_configuration, load_configurations, resource_files, Resources};
pub use meta::{valid_name, MetaValue, MetadataItem, ObjectMeta, SecretKeyRef};
pub use resiliency::*;
pub use subscription::{BulkSubscribe, Routes, Rule, Subscription, SubscriptionSpec};

#[cfg(test)]
mod tests;
