//! The state conformance suite against every embedded store. Later stores
//! (Redis, PostgreSQL, MySQL) join with one line each.

use std::sync::Arc;

use spar_components::state::{conformance, memory, StateStore};
use spar_tests::unique;

#[tokio::test]
async fn in_memory() {
    let store: Arc<dyn StateStore> = Arc::new(memory::MemoryStore::new());
    conformance::run_all(store, &unique("conf")).await;
}

#[tokio::test]
async fn sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        spar_components::state::sqlite::SqliteStore::open(&dir.path().join("c.db")).unwrap();
    conformance::run_all(Arc::new(store), &unique("conf")).await;
}
