//! `bindings.localstorage`: files under `rootPath`, as daprd's output
//! binding: `create` (name from `fileName` metadata, else a new UUID;
//! a JSON string is unquoted and base64 decoded when it is base64),
//! `get` and `delete` (`fileName` required), `list` (every file under the
//! root, as a JSON array of paths). A name that would leave the root —
//! `..`, an absolute path, a symlink pointing outside — is refused before
//! anything is read or written.

use std::path::{Component as PathPart, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;

use super::{ops, Binding, BindingError, InvokeRequest, InvokeResponse};
use crate::build::{BuildContext, BuildError};
use crate::meta::Meta;

pub struct LocalStorage {
    root: PathBuf,
}

pub fn build(
    c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn Binding>, BuildError> {
    let m = Meta::new(c);
    let root = PathBuf::from(m.required("rootPath")?);
    Ok(Arc::new(LocalStorage { root }))
}

fn backend(e: impl std::fmt::Display) -> BindingError {
    BindingError::Backend(e.to_string())
}

impl LocalStorage {
    /// The root, resolved (symlinks followed), created if missing.
    fn root(&self) -> Result<PathBuf, BindingError> {
        std::fs::create_dir_all(&self.root).map_err(backend)?;
        self.root.canonicalize().map_err(backend)
    }

    /// `name` under the root, or an error when it would leave it: only
    /// plain relative parts, and no symlink on the way out of the root.
    fn path(&self, name: &str) -> Result<PathBuf, BindingError> {
        let refuse = || {
            BindingError::BadRequest(format!(
                "invalid file name {name:?}: it must be a relative path inside rootPath"
            ))
        };
        let rel = Path::new(name);
        if name.is_empty()
            || !rel
                .components()
                .all(|c| matches!(c, PathPart::Normal(_) | PathPart::CurDir))
        {
            return Err(refuse());
        }
        let root = self.root()?;
        let full = root.join(rel);
        // The deepest existing ancestor, resolved, must stay in the root.
        let mut probe = full.clone();
        loop {
            if let Ok(real) = probe.canonicalize() {
                if !real.starts_with(&root) {
                    return Err(refuse());
                }
                break;
            }
            if !probe.pop() {
                return Err(refuse());
            }
        }
        Ok(full)
    }

    fn file_name(req: &InvokeRequest) -> Result<&str, BindingError> {
        req.metadata
            .get("fileName")
            .map(String::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| BindingError::BadRequest("required metadata 'fileName' missing".into()))
    }

    fn list(&self) -> Result<Vec<String>, BindingError> {
        let root = self.root()?;
        let mut out = Vec::new();
        let mut dirs = vec![root];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).map_err(backend)? {
                let e = e.map_err(backend)?;
                let t = e.file_type().map_err(backend)?;
                if t.is_dir() {
                    dirs.push(e.path());
                } else if t.is_file() {
                    out.push(e.path().display().to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// What `create` writes: a JSON string's content, base64-decoded when it
/// is valid base64 (daprd's "binary upload"), else the bytes as given.
fn content(data: &[u8]) -> Vec<u8> {
    let text = match serde_json::from_slice::<String>(data) {
        Ok(s) => s.into_bytes(),
        Err(_) => data.to_vec(),
    };
    match base64::engine::general_purpose::STANDARD.decode(&text) {
        Ok(b) if !text.is_empty() => b,
        _ => text,
    }
}

#[async_trait]
impl Binding for LocalStorage {
    async fn init(&self) -> Result<(), BindingError> {
        self.root().map(|_| ())
    }

    fn operations(&self) -> &[&'static str] {
        &[ops::CREATE, ops::GET, ops::LIST, ops::DELETE]
    }

    async fn invoke(&self, req: InvokeRequest) -> Result<Option<InvokeResponse>, BindingError> {
        match req.operation.as_str() {
            ops::CREATE => {
                let name = match req.metadata.get("fileName").filter(|n| !n.is_empty()) {
                    Some(n) => n.clone(),
                    None => uuid::Uuid::new_v4().to_string(),
                };
                let path = self.path(&name)?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(backend)?;
                    // A directory made on the way must not have let a
                    // symlink lead out.
                    self.path(&name)?;
                }
                // Written beside, then renamed: a reader never sees half a file.
                let tmp = path.with_extension(format!("spar-{}.tmp", uuid::Uuid::new_v4()));
                std::fs::write(&tmp, content(&req.data)).map_err(backend)?;
                std::fs::rename(&tmp, &path).map_err(|e| {
                    let _ = std::fs::remove_file(&tmp);
                    backend(e)
                })?;
                Ok(Some(InvokeResponse {
                    data: serde_json::to_vec(&serde_json::json!({ "fileName": name }))
                        .unwrap_or_default(),
                    metadata: [("fileName".to_string(), name)].into(),
                }))
            }
            ops::GET => {
                let path = self.path(Self::file_name(&req)?)?;
                let data = std::fs::read(&path).map_err(|e| {
                    BindingError::Backend(format!("file not found: {}: {e}", path.display()))
                })?;
                Ok(Some(InvokeResponse {
                    data,
                    metadata: Default::default(),
                }))
            }
            ops::DELETE => {
                let path = self.path(Self::file_name(&req)?)?;
                std::fs::remove_file(&path).map_err(|e| {
                    BindingError::Backend(format!("file not found: {}: {e}", path.display()))
                })?;
                Ok(None)
            }
            ops::LIST => Ok(Some(InvokeResponse {
                data: serde_json::to_vec(&self.list()?).unwrap_or_default(),
                metadata: Default::default(),
            })),
            op => Err(BindingError::Unsupported(format!(
                "unsupported operation {op}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> LocalStorage {
        LocalStorage {
            root: dir.join("root"),
        }
    }

    #[test]
    fn escapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
            assert!(
                matches!(s.path(bad), Err(BindingError::BadRequest(_))),
                "{bad}"
            );
        }
        std::fs::create_dir_all(dir.path().join("root")).unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("root/out")).unwrap();
        assert!(s.path("out/secret").is_err());
        assert!(s.path("in/ok.txt").is_ok());
    }

    #[test]
    fn content_decoding() {
        assert_eq!(content(br#""Hello World""#), b"Hello World");
        assert_eq!(content(br#""aGVsbG8=""#), b"hello");
        assert_eq!(content(b"{\"a\":1}"), b"{\"a\":1}");
    }
}
