//! A client per thread. A multiplexed connection's driver task runs on the
//! runtime that first used it; a call from another runtime's thread then
//! crosses threads twice (wake the driver, wake the caller back), which
//! measured ≈ 0.1 ms more per Redis call on loopback than a call from the
//! driver's own thread (bench/state.sh, gRPC against HTTP). spar's
//! listeners each run on their own thread, so a store keeps one client per
//! thread that calls it: the first call on a thread makes that thread's,
//! and its driver then lives there.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

type Slot = (Weak<()>, Box<dyn Any>);

thread_local! {
    static SLOTS: RefCell<HashMap<u64, Slot>> = RefCell::default();
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub struct PerThread<T> {
    id: u64,
    /// Dropped with the owner: other threads' clients of it are released
    /// the next time those threads make a client (after a hot reload,
    /// the new component's first call on each thread).
    alive: Arc<()>,
    make: Box<dyn Fn() -> Option<T> + Send + Sync>,
    /// Used where `make` fails.
    fallback: T,
}

impl<T: Clone + 'static> PerThread<T> {
    pub fn new(fallback: T, make: impl Fn() -> Option<T> + Send + Sync + 'static) -> Self {
        PerThread {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            alive: Arc::new(()),
            make: Box::new(make),
            fallback,
        }
    }

    /// This thread's client (made on first use; call it from the task that
    /// uses it, so a lazily spawned driver lands on this thread's runtime).
    pub fn get(&self) -> T {
        SLOTS.with(|s| {
            let mut s = s.borrow_mut();
            if let Some(t) = s.get(&self.id).and_then(|(_, v)| v.downcast_ref::<T>()) {
                return t.clone();
            }
            s.retain(|_, (alive, _)| alive.strong_count() > 0);
            let t = (self.make)().unwrap_or_else(|| self.fallback.clone());
            s.insert(self.id, (Arc::downgrade(&self.alive), Box::new(t.clone())));
            t
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn one_per_thread_and_released_with_the_owner() {
        let made = Arc::new(AtomicUsize::new(0));
        let m = made.clone();
        let p = PerThread::new(Arc::new(0usize), move || {
            Some(Arc::new(m.fetch_add(1, Ordering::SeqCst) + 1))
        });
        let here = p.get();
        assert!(Arc::ptr_eq(&here, &p.get()), "same thread, same client");
        let p = Arc::new(p);
        let p2 = p.clone();
        let there = std::thread::spawn(move || *p2.get()).join().unwrap();
        assert_ne!(*here, there, "another thread, another client");
        assert_eq!(made.load(Ordering::SeqCst), 2);

        // Owner gone: this thread's client is released when it next makes one.
        let weak = Arc::downgrade(&here);
        drop(here);
        drop(p);
        let q = PerThread::new(Arc::new(0usize), || Some(Arc::new(9)));
        assert_eq!(*q.get(), 9);
        assert!(weak.upgrade().is_none(), "released");
    }

    #[test]
    fn falls_back_when_making_fails() {
        let p = PerThread::new(7u8, || None);
        assert_eq!(p.get(), 7);
    }
}
