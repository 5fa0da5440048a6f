//! Typed reads of a component's `spec.metadata`, as Dapr's components read
//! them, for every component kind: names match case-insensitively, an
//! empty value is no value, `secretKeyRef`/`envRef`/template tags are
//! already resolved (proxy/src/components.rs), and every error names the
//! component, the field and the form expected.
//!
//! ```ignore
//! let m = Meta::new(c);
//! let host = m.required("redisHost")?;
//! let timeout = m.duration("readTimeout", Duration::from_secs(3))?;
//! let qos = m.int::<u8>("qos", 1)?;
//! ```

use std::str::FromStr;
use std::time::Duration;

use spar_config::Component;

use crate::registry::BuildError;

#[derive(Clone, Copy)]
pub struct Meta<'a> {
    c: &'a Component,
}

impl<'a> Meta<'a> {
    pub fn new(c: &'a Component) -> Self {
        Meta { c }
    }

    /// The component's name (for messages).
    pub fn name(&self) -> &str {
        self.c.name()
    }

    /// An error about `field` of this component.
    pub fn error(&self, field: &str, message: impl Into<String>) -> BuildError {
        BuildError::Metadata {
            component: self.c.name().to_string(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// A value, when set and not empty.
    pub fn str(&self, name: &str) -> Option<String> {
        self.c.meta(name)
    }

    /// A value, or `default`.
    pub fn str_or(&self, name: &str, default: &str) -> String {
        self.str(name).unwrap_or_else(|| default.to_string())
    }

    /// A value that must be there.
    pub fn required(&self, name: &str) -> Result<String, BuildError> {
        self.str(name)
            .ok_or_else(|| self.error(name, "is required"))
    }

    /// A boolean as Dapr's components take it: true/false, 1/0, t/f,
    /// yes/no, y/n, on/off (any case).
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, BuildError> {
        match self.str(name) {
            None => Ok(default),
            Some(v) => parse_bool(&v)
                .ok_or_else(|| self.error(name, format!("{v:?} is not a boolean (true or false)"))),
        }
    }

    /// A number of any integer (or float) type.
    pub fn int<T: FromStr>(&self, name: &str, default: T) -> Result<T, BuildError> {
        match self.str(name) {
            None => Ok(default),
            Some(v) => v.trim().parse::<T>().map_err(|_| {
                self.error(
                    name,
                    format!("{v:?} is not a {}", std::any::type_name::<T>()),
                )
            }),
        }
    }

    /// A number that is optional (no default).
    pub fn int_opt<T: FromStr>(&self, name: &str) -> Result<Option<T>, BuildError> {
        self.str(name)
            .map(|v| {
                v.trim().parse::<T>().map_err(|_| {
                    self.error(
                        name,
                        format!("{v:?} is not a {}", std::any::type_name::<T>()),
                    )
                })
            })
            .transpose()
    }

    /// A Go duration (`500ms`, `1m30s`) or a whole number of seconds.
    pub fn duration(&self, name: &str, default: Duration) -> Result<Duration, BuildError> {
        Ok(self.duration_opt(name)?.unwrap_or(default))
    }

    /// A duration with no default.
    pub fn duration_opt(&self, name: &str) -> Result<Option<Duration>, BuildError> {
        self.str(name)
            .map(|v| {
                spar_config::parse_metadata_duration(&v).map_err(|e| {
                    self.error(name, format!("{e} (a Go duration such as 5s, or seconds)"))
                })
            })
            .transpose()
    }

    /// A size in bytes: a number, or a quantity (`4Mi`, `512Ki`, `1M`).
    pub fn bytes(&self, name: &str, default: u64) -> Result<u64, BuildError> {
        match self.str(name) {
            None => Ok(default),
            Some(v) => parse_bytes(&v).ok_or_else(|| {
                self.error(name, format!("{v:?} is not a size (1048576, 512Ki, 4Mi)"))
            }),
        }
    }

    /// One of a fixed set of words (any case); the canonical spelling is
    /// returned.
    pub fn one_of(
        &self,
        name: &str,
        allowed: &[&'static str],
        default: &'static str,
    ) -> Result<&'static str, BuildError> {
        match self.str(name) {
            None => Ok(default),
            Some(v) => allowed
                .iter()
                .find(|a| a.eq_ignore_ascii_case(v.trim()))
                .copied()
                .ok_or_else(|| {
                    self.error(name, format!("{v:?} must be one of {}", allowed.join(", ")))
                }),
        }
    }
}

/// Dapr's truthy and falsy words.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "1" | "yes" | "y" | "on" => Some(true),
        "false" | "f" | "0" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

/// Bytes from a number or a binary/decimal quantity.
fn parse_bytes(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mul: u64 = match unit {
        "" => 1,
        "k" | "K" | "kB" | "KB" => 1000,
        "Ki" | "KiB" => 1 << 10,
        "M" | "MB" => 1_000_000,
        "Mi" | "MiB" => 1 << 20,
        "G" | "GB" => 1_000_000_000,
        "Gi" | "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mul)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(meta: &[(&str, &str)]) -> Component {
        Component::new("c", "state.x", meta)
    }

    #[test]
    fn reads_as_dapr_components_do() {
        let c = component(&[
            ("Host", "h:1"),
            ("empty", ""),
            ("flag", "Yes"),
            ("n", "42"),
            ("d1", "1m30s"),
            ("d2", "20"),
            ("size", "4Mi"),
            ("kind", "Topic"),
        ]);
        let m = Meta::new(&c);
        assert_eq!(m.required("host").unwrap(), "h:1");
        assert_eq!(m.str("empty"), None);
        assert!(m.required("empty").is_err());
        assert!(m.bool("flag", false).unwrap());
        assert!(m.bool("missing", true).unwrap());
        assert_eq!(m.int::<u32>("n", 0).unwrap(), 42);
        assert_eq!(m.int_opt::<u32>("nope").unwrap(), None);
        assert_eq!(
            m.duration("d1", Duration::ZERO).unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            m.duration("d2", Duration::ZERO).unwrap(),
            Duration::from_secs(20)
        );
        assert_eq!(m.bytes("size", 0).unwrap(), 4 << 20);
        assert_eq!(
            m.one_of("kind", &["fanout", "topic"], "fanout").unwrap(),
            "topic"
        );
    }

    #[test]
    fn errors_name_component_field_and_form() {
        let c = component(&[
            ("flag", "maybe"),
            ("n", "x"),
            ("d", "5 parsecs"),
            ("k", "z"),
        ]);
        let m = Meta::new(&c);
        for e in [
            m.bool("flag", false).unwrap_err(),
            m.int::<u8>("n", 0).unwrap_err(),
            m.duration("d", Duration::ZERO).unwrap_err(),
            m.one_of("k", &["a", "b"], "a").unwrap_err(),
        ] {
            let s = e.to_string();
            assert!(s.contains("component c: metadata "), "{s}");
        }
        assert!(m
            .bool("flag", false)
            .unwrap_err()
            .to_string()
            .contains("boolean"));
    }
}
