//! What building any component takes and how it fails: the context every
//! builder reads and the one error type (the registry and every component
//! kind use them; neither depends on the other for them).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BuildError {
    #[error("unknown component type {0:?} (supported: {1})")]
    UnknownType(String, String),
    #[error("no version {1:?} of {0} (spar has v1)")]
    UnknownVersion(String, String),
    #[error("component {component}: metadata {field}: {message}")]
    Metadata {
        component: String,
        field: String,
        message: String,
    },
    #[error("component {component}: {message}")]
    Init { component: String, message: String },
}

/// Options every component builder can read (not from the component's YAML).
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// Where embedded stores keep files when no path is configured.
    pub data_dir: std::path::PathBuf,
}
