//! Reading resource directories and configuration files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::{ConfigError, ConfigErrors};
use crate::meta::valid_name;
use crate::subscription::RawSubscription;
use crate::{Component, Configuration, HttpEndpoint, Resiliency, Subscription};

/// Everything found in the resource directories.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub components: Vec<Component>,
    pub configurations: Vec<Configuration>,
    pub resiliencies: Vec<Resiliency>,
    pub subscriptions: Vec<Subscription>,
    pub http_endpoints: Vec<HttpEndpoint>,
    /// Documents skipped on purpose (unknown kinds), for the log.
    pub warnings: Vec<String>,
}

fn in_scope(scopes: &[String], app_id: &str) -> bool {
    scopes.is_empty() || scopes.iter().any(|s| s == app_id)
}

impl Resources {
    /// Loads every `*.yaml`/`*.yml` file of each directory (not recursive,
    /// sorted by name), every document of each file. All errors are collected.
    pub fn load_dirs(dirs: &[PathBuf]) -> Result<Resources, ConfigErrors> {
        let mut res = Resources::default();
        let mut errs = Vec::new();
        for dir in dirs {
            if let Err(e) = std::fs::read_dir(dir) {
                errs.push(file_error(
                    dir,
                    format!("cannot read resources directory: {e}"),
                ));
            }
        }
        for f in resource_files(dirs) {
            load_file(&f, &mut res, &mut errs);
        }
        if let Err(mut e) = res.check_unique() {
            errs.append(&mut e.0);
        }
        if errs.is_empty() {
            Ok(res)
        } else {
            Err(ConfigErrors(errs))
        }
    }

    /// One file's resources: hot reload re-reads changed files one by one,
    /// so a broken file is refused alone.
    pub fn load_file(path: &Path) -> Result<Resources, ConfigErrors> {
        let mut res = Resources::default();
        let mut errs = Vec::new();
        load_file(path, &mut res, &mut errs);
        if errs.is_empty() {
            Ok(res)
        } else {
            Err(ConfigErrors(errs))
        }
    }

    /// Several files' resources as one set (component names unique).
    pub fn merge<'a>(
        parts: impl IntoIterator<Item = &'a Resources>,
    ) -> Result<Resources, ConfigErrors> {
        let mut res = Resources::default();
        for p in parts {
            res.components.extend(p.components.iter().cloned());
            res.configurations.extend(p.configurations.iter().cloned());
            res.resiliencies.extend(p.resiliencies.iter().cloned());
            res.subscriptions.extend(p.subscriptions.iter().cloned());
            res.http_endpoints.extend(p.http_endpoints.iter().cloned());
            res.warnings.extend(p.warnings.iter().cloned());
        }
        res.check_unique()?;
        Ok(res)
    }

    /// Component names are unique across all files.
    fn check_unique(&self) -> Result<(), ConfigErrors> {
        let mut errs = Vec::new();
        let mut seen: HashMap<&str, &Path> = HashMap::new();
        for c in &self.components {
            if let Some(first) = seen.insert(c.name(), &c.source) {
                errs.push(ConfigError {
                    file: c.source.clone(),
                    resource: Some(format!("Component/{}", c.name())),
                    field: Some("metadata.name".into()),
                    message: format!(
                        "duplicate component name, also defined in {}",
                        first.display()
                    ),
                });
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errs))
        }
    }

    /// Only what applies to `app_id`: resources with no scopes or listing
    /// it; and, as daprd, with `NAMESPACE` set, components of no namespace
    /// or that one.
    pub fn for_app(&self, app_id: &str) -> Resources {
        let ns = std::env::var("NAMESPACE").ok().filter(|n| !n.is_empty());
        let in_ns = |c: &Component| match (&ns, &c.metadata.namespace) {
            (Some(ns), Some(m)) if !m.is_empty() => m == ns,
            _ => true,
        };
        Resources {
            components: self
                .components
                .iter()
                .filter(|c| in_scope(&c.scopes, app_id) && in_ns(c))
                .cloned()
                .collect(),
            configurations: self.configurations.clone(),
            resiliencies: self
                .resiliencies
                .iter()
                .filter(|r| in_scope(&r.scopes, app_id))
                .cloned()
                .collect(),
            subscriptions: self
                .subscriptions
                .iter()
                .filter(|s| in_scope(&s.scopes, app_id))
                .cloned()
                .collect(),
            http_endpoints: self
                .http_endpoints
                .iter()
                .filter(|h| in_scope(&h.scopes, app_id))
                .cloned()
                .collect(),
            warnings: self.warnings.clone(),
        }
    }
}

/// The resource files of `dirs`: `*.yaml`/`*.yml`, not recursive, sorted
/// by name within each directory. Unreadable directories yield nothing.
pub fn resource_files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
            })
            .collect();
        files.sort();
        out.extend(files);
    }
    out
}

/// Loads one `--config` file (see [`load_configurations`]).
pub fn load_configuration(path: &Path) -> Result<Configuration, ConfigErrors> {
    load_configurations(std::slice::from_ref(&path.to_path_buf()))
}

/// Loads the `--config` files as daprd does: each file's `$VAR` / `${VAR}`
/// references expanded from the environment, then the files laid over one
/// another in order (mappings merge, later values win). Like daprd, the
/// file's `apiVersion` and `kind` are not required.
pub fn load_configurations(paths: &[PathBuf]) -> Result<Configuration, ConfigErrors> {
    let mut merged = serde_yaml::Value::Null;
    let mut source = PathBuf::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![file_error(path, format!("cannot read: {e}"))]))?;
        let text = crate::expand::expand_env(&text);
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = serde_yaml::Value::deserialize(doc)
                .map_err(|e| ConfigErrors(vec![file_error(path, format!("invalid YAML: {e}"))]))?;
            let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
            // A file may hold other documents too: the Configuration is the
            // one of that kind, or one with no kind at all.
            if v.is_null() || !(kind.is_empty() || kind == "Configuration") {
                continue;
            }
            crate::expand::merge(&mut merged, v);
            source = path.clone();
        }
    }
    if merged.is_null() {
        let path = paths.first().cloned().unwrap_or_default();
        return Err(ConfigErrors(vec![file_error(
            &path,
            "no document of kind Configuration".into(),
        )]));
    }
    let mut problems = Vec::new();
    if let Some(mut c) = typed::<Configuration>(merged, &mut problems) {
        c.validate(&mut problems);
        c.source = source.clone();
        if problems.is_empty() {
            return Ok(c);
        }
    }
    Err(ConfigErrors(
        problems
            .into_iter()
            .map(|(field, message)| ConfigError {
                file: source.clone(),
                resource: Some("Configuration".into()),
                field: Some(field),
                message,
            })
            .collect(),
    ))
}

fn is_dapr_kind(kind: &str) -> bool {
    matches!(
        kind,
        "Component" | "Configuration" | "Resiliency" | "Subscription" | "HTTPEndpoint"
    )
}

fn file_error(file: &Path, message: String) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        resource: None,
        field: None,
        message,
    }
}

fn load_file(path: &Path, res: &mut Resources, errs: &mut Vec<ConfigError>) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            errs.push(file_error(path, format!("cannot read: {e}")));
            return;
        }
    };
    for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let v = match serde_yaml::Value::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                // A syntax error leaves the rest of the file unreadable.
                errs.push(file_error(path, format!("invalid YAML: {e}")));
                return;
            }
        };
        if v.is_null() {
            continue;
        }
        load_doc(path, i, v, res, errs);
    }
}

fn load_doc(
    path: &Path,
    index: usize,
    v: serde_yaml::Value,
    res: &mut Resources,
    errs: &mut Vec<ConfigError>,
) {
    let s = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let kind = s("kind");
    let api_version = s("apiVersion");
    let name = v
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_string();
    let label = if kind.is_empty() {
        format!("document {}", index + 1)
    } else if name.is_empty() {
        format!("{kind} (document {})", index + 1)
    } else {
        format!("{kind}/{name}")
    };
    // daprd's loader reads only documents of its own kinds and API
    // versions and passes over the rest; spar says so in a warning.
    if !is_dapr_kind(&kind) {
        let what = if kind.is_empty() {
            "has no kind".to_string()
        } else {
            format!("kind {kind:?} is not a Dapr resource")
        };
        res.warnings
            .push(format!("{}: {label}: {what}; ignored", path.display()));
        return;
    }
    let versions: &[&str] = if kind == "Subscription" {
        &["dapr.io/v1alpha1", "dapr.io/v2alpha1"]
    } else {
        &["dapr.io/v1alpha1"]
    };
    if !versions.contains(&api_version.as_str()) {
        res.warnings.push(format!(
            "{}: {label}: apiVersion {api_version:?} is not one daprd reads for {kind} ({}); ignored",
            path.display(),
            versions.join(", ")
        ));
        return;
    }
    let mut problems: Vec<(String, String)> = Vec::new();
    if name.is_empty() {
        problems.push(("metadata.name".into(), "is required".into()));
    } else if !valid_name(&name) {
        problems.push((
            "metadata.name".into(),
            format!("{name:?} must be a valid path segment (not '.' or '..', no '/' or '%')"),
        ));
    }
    let source = path.to_path_buf();
    match kind.as_str() {
        "Component" => {
            if let Some(mut c) = typed::<Component>(v, &mut problems) {
                c.validate(&mut problems);
                c.source = source;
                res.components.push(c);
            }
        }
        "Configuration" => {
            if let Some(mut c) = typed::<Configuration>(v, &mut problems) {
                c.validate(&mut problems);
                c.source = source;
                res.configurations.push(c);
            }
        }
        "Resiliency" => {
            if let Some(mut r) = typed::<Resiliency>(v, &mut problems) {
                r.validate(&mut problems);
                r.source = source;
                res.resiliencies.push(r);
            }
        }
        "Subscription" => {
            if let Some(raw) = typed::<RawSubscription>(v, &mut problems) {
                let mut sub = raw.into_subscription(&mut problems);
                sub.source = source;
                res.subscriptions.push(sub);
            }
        }
        "HTTPEndpoint" => {
            if let Some(mut h) = typed::<HttpEndpoint>(v, &mut problems) {
                h.validate(&mut problems);
                h.source = source;
                res.http_endpoints.push(h);
            }
        }
        _ => {}
    }
    errs.extend(problems.into_iter().map(|(field, message)| ConfigError {
        file: path.to_path_buf(),
        resource: Some(label.clone()),
        field: Some(field),
        message,
    }));
}

/// Deserialises a document into its kind's type; a type error names the
/// path of the field it is about.
fn typed<T: DeserializeOwned>(
    v: serde_yaml::Value,
    problems: &mut Vec<(String, String)>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(v) {
        Ok(t) => Some(t),
        Err(e) => {
            let path = e.path().to_string();
            let field = if path == "." {
                "(document)".to_string()
            } else {
                path
            };
            problems.push((field, e.into_inner().to_string()));
            None
        }
    }
}
