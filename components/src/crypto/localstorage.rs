//! `crypto.dapr.localstorage`: keys are files in a folder (`path`), one
//! key per file, named by the file's name — `.json` a JSON Web Key, `.pem`
//! a PEM block, anything else guessed (JWK, PEM or raw / base64 symmetric
//! key). Read on each use, as daprd does, so a replaced file takes effect
//! at once. A name that would leave the folder is refused.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::{CryptoError, CryptoProvider, Format, Key};
use crate::build::{BuildContext, BuildError};
use crate::meta::Meta;

pub struct LocalStorage {
    root: PathBuf,
}

pub fn build(
    c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn CryptoProvider>, BuildError> {
    let m = Meta::new(c);
    let path = m.required("path")?;
    let root = PathBuf::from(&path);
    match std::fs::metadata(&root) {
        Ok(md) if md.is_dir() => Ok(Arc::new(LocalStorage { root })),
        Ok(_) => Err(m.error("path", format!("{path:?} is not a directory"))),
        Err(e) => Err(m.error("path", format!("could not stat {path:?}: {e}"))),
    }
}

impl LocalStorage {
    pub fn new(root: PathBuf) -> Self {
        LocalStorage { root }
    }

    /// The file for a key name, inside the folder. `..` anywhere is refused
    /// (daprd's rule); a leading `/` is a name inside the folder, as Go's
    /// `filepath.Join` takes it, never an absolute path.
    fn file(&self, name: &str) -> Result<PathBuf, CryptoError> {
        if name.contains("..") {
            return Err(CryptoError::InvalidKeyName(
                "invalid key path: cannot contain '..'".into(),
            ));
        }
        if name.contains('\0') || name.contains('\\') {
            return Err(CryptoError::InvalidKeyName(format!("{name:?}")));
        }
        let rel = name.trim_start_matches('/');
        if rel.is_empty() {
            return Err(CryptoError::InvalidKeyName("empty key name".into()));
        }
        Ok(self.root.join(rel))
    }
}

#[async_trait]
impl CryptoProvider for LocalStorage {
    async fn key(&self, name: &str) -> Result<Arc<Key>, CryptoError> {
        let path = self.file(name)?;
        let data = match tokio::fs::read(&path).await {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CryptoError::KeyNotFound)
            }
            Err(e) => return Err(CryptoError::KeyLoad(format!("{name:?}: {e}"))),
        };
        let format = match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("json") => Format::Jwk,
            Some("pem") => Format::Pem,
            _ => Format::Guess,
        };
        Key::parse(&data, format).map(Arc::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_stay_inside_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k"), [1u8; 32]).unwrap();
        let s = LocalStorage::new(dir.path().to_path_buf());
        assert!(s.key("k").await.is_ok());
        assert!(s.key("/k").await.is_ok());
        for bad in ["../k", "a/../../k", "..", "k\0", ""] {
            assert!(
                matches!(s.key(bad).await, Err(CryptoError::InvalidKeyName(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            s.key("missing").await.unwrap_err(),
            CryptoError::KeyNotFound
        );
    }
}
