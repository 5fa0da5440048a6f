//! The lock store conformance suite: every store answers the same way.
//! `prefix` keeps each run's resource ids apart on shared backends.

use std::sync::Arc;
use std::time::Duration;

use super::{LockStore, UnlockStatus};

pub async fn run_all(store: Arc<dyn LockStore>, prefix: &str) {
    store.init().await.expect("init");
    owner_holds_until_unlock(&*store, &format!("{prefix}-own")).await;
    unlock_answers(&*store, &format!("{prefix}-unlock")).await;
    one_of_many_wins(store.clone(), &format!("{prefix}-race")).await;
    expiry_frees(&*store, &format!("{prefix}-exp")).await;
}

pub async fn owner_holds_until_unlock(s: &dyn LockStore, r: &str) {
    let long = Duration::from_secs(60);
    assert!(s.try_lock(r, "a", long).await.unwrap(), "free lock taken");
    assert!(
        !s.try_lock(r, "b", long).await.unwrap(),
        "held lock refused"
    );
    assert!(
        !s.try_lock(r, "a", long).await.unwrap(),
        "not re-entrant, as in Dapr"
    );
    assert_eq!(s.unlock(r, "a").await.unwrap(), UnlockStatus::Success);
    assert!(
        s.try_lock(r, "b", long).await.unwrap(),
        "released lock taken"
    );
    assert_eq!(s.unlock(r, "b").await.unwrap(), UnlockStatus::Success);
}

pub async fn unlock_answers(s: &dyn LockStore, r: &str) {
    assert_eq!(
        s.unlock(r, "a").await.unwrap(),
        UnlockStatus::LockDoesNotExist
    );
    assert!(s.try_lock(r, "a", Duration::from_secs(60)).await.unwrap());
    assert_eq!(
        s.unlock(r, "b").await.unwrap(),
        UnlockStatus::LockBelongsToOthers
    );
    assert_eq!(s.unlock(r, "a").await.unwrap(), UnlockStatus::Success);
    assert_eq!(
        s.unlock(r, "a").await.unwrap(),
        UnlockStatus::LockDoesNotExist
    );
}

/// 20 owners at once: exactly one gets it.
pub async fn one_of_many_wins(s: Arc<dyn LockStore>, r: &str) {
    let tries = (0..20).map(|i| {
        let s = s.clone();
        let r = r.to_string();
        tokio::spawn(async move {
            s.try_lock(&r, &format!("owner-{i}"), Duration::from_secs(60))
                .await
        })
    });
    let mut won = Vec::new();
    for (i, t) in tries.enumerate() {
        if t.await.unwrap().unwrap() {
            won.push(i);
        }
    }
    assert_eq!(won.len(), 1, "winners: {won:?}");
    assert_eq!(
        s.unlock(r, &format!("owner-{}", won[0])).await.unwrap(),
        UnlockStatus::Success
    );
}

/// A lock nobody releases is free once its expiry has passed.
pub async fn expiry_frees(s: &dyn LockStore, r: &str) {
    assert!(s.try_lock(r, "a", Duration::from_secs(1)).await.unwrap());
    assert!(!s.try_lock(r, "b", Duration::from_secs(1)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        s.unlock(r, "a").await.unwrap(),
        UnlockStatus::LockDoesNotExist,
        "expired lock is gone"
    );
    assert!(s.try_lock(r, "b", Duration::from_secs(60)).await.unwrap());
    assert_eq!(s.unlock(r, "b").await.unwrap(), UnlockStatus::Success);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn in_memory() {
        run_all(Arc::new(super::super::memory::MemoryLock::default()), "m").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("l.db").display().to_string();
        let s =
            super::super::sqlite::SqliteLock::open(&db, "locks", Duration::from_secs(5)).unwrap();
        run_all(Arc::new(s), "s").await;
    }

    /// Two handles on one file (two sidecars): a lock taken through one is
    /// held for the other.
    #[tokio::test]
    async fn sqlite_shared_between_processes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("l.db").display().to_string();
        let t = Duration::from_secs(5);
        let a = super::super::sqlite::SqliteLock::open(&db, "locks", t).unwrap();
        let b = super::super::sqlite::SqliteLock::open(&db, "locks", t).unwrap();
        assert!(a.try_lock("r", "a", Duration::from_secs(60)).await.unwrap());
        assert!(!b.try_lock("r", "b", Duration::from_secs(60)).await.unwrap());
        assert_eq!(
            b.unlock("r", "b").await.unwrap(),
            UnlockStatus::LockBelongsToOthers
        );
        assert_eq!(b.unlock("r", "a").await.unwrap(), UnlockStatus::Success);
    }
}
