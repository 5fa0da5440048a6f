//! The secret store conformance suite. The harness seeds each store with the
//! same secrets (its own way: a file, environment variables…) and passes
//! what it seeded.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{SecretError, SecretStore};

/// `seeded`: (secret name, value) pairs the store must serve, each as a
/// single-key secret named like itself.
pub async fn run_all(store: Arc<dyn SecretStore>, seeded: &[(&str, &str)], missing: &str) {
    let md = BTreeMap::new();
    for (name, value) in seeded {
        let s = store.get(name, &md).await.expect("seeded secret");
        assert_eq!(
            s.get(*name).map(String::as_str),
            Some(*value),
            "secret {name}"
        );
    }
    assert!(matches!(
        store.get(missing, &md).await,
        Err(SecretError::NotFound(_))
    ));
    let all = store.bulk_get(&md).await.expect("bulk");
    for (name, value) in seeded {
        assert_eq!(
            all.get(*name)
                .and_then(|s| s.get(*name))
                .map(String::as_str),
            Some(*value),
            "bulk {name}"
        );
    }
    assert!(!all.contains_key(missing));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::{local_env::EnvStore, local_file::FileStore};

    #[tokio::test]
    async fn local_file() {
        let f = FileStore::from_json(r#"{"a": "1", "b": {"c": "2"}}"#, ":", false).unwrap();
        run_all(Arc::new(f), &[("a", "1"), ("b:c", "2")], "zzz").await;
    }

    #[tokio::test]
    async fn local_env() {
        // A unique prefix keeps this test's variables apart from the process's.
        std::env::set_var("SPARCONFTEST_one", "1");
        std::env::set_var("SPARCONFTEST_two", "2");
        run_all(
            Arc::new(EnvStore::new("SPARCONFTEST_")),
            &[("one", "1"), ("two", "2")],
            "three",
        )
        .await;
    }
}
