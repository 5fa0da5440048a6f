//! Middleware from the Configuration's `spec.httpPipeline.handlers`, each
//! built from its `middleware.http.*` component. Adding a middleware type
//! is one file here (a filter and its `build`) plus one line in [`TYPES`].

mod ratelimit;

use std::sync::Arc;

use spar_components::BuildError;
use spar_config::Component;

use crate::Filter;

type Builder = fn(&Component) -> Result<Arc<dyn Filter>, BuildError>;

/// Middleware constructors by `spec.type`.
const TYPES: &[(&str, Builder)] = &[("middleware.http.ratelimit", ratelimit::build)];

/// The filter for a middleware component (its type and metadata checked).
pub fn build(c: &Component) -> Result<Arc<dyn Filter>, String> {
    match TYPES.iter().find(|(t, _)| *t == c.spec.type_) {
        Some((_, b)) => b(c).map_err(|e| e.to_string()),
        None => Err(format!(
            "middleware {:?}: type {:?} is not supported (supported: {})",
            c.name(),
            c.spec.type_,
            types().join(", ")
        )),
    }
}

/// Every middleware type spar builds.
pub fn types() -> Vec<&'static str> {
    TYPES.iter().map(|(t, _)| *t).collect()
}

#[cfg(test)]
pub(crate) fn component(ty: &str, meta: &[(&str, &str)]) -> Component {
    Component::new("mw", ty, meta)
}

#[cfg(test)]
mod tests {
    #[test]
    fn unknown_types_name_the_supported_ones() {
        let Err(e) = super::build(&super::component("middleware.http.nope", &[])) else {
            panic!("built an unknown type");
        };
        assert!(e.contains("middleware.http.ratelimit"), "{e}");
    }
}
