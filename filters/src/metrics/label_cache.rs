//! A metric family whose children are looked up through a small cache.
//!
//! prometheus' `with_label_values` hashes every label, takes the family's
//! lock, checks the labels and clones the child on each call: about 250
//! instructions, five times per invocation on each side. The hot path asks
//! `with` instead, which finds a child it has seen by one fast hash and a
//! label comparison, and hands it out by reference.
//!
//! A cached child must stay the family's: these families are never reset
//! and none of their children is removed (`remove_label_values` would leave
//! the cache counting into a child no longer exported).

use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::RwLock;

use prometheus::{Counter, CounterVec, Histogram, HistogramVec};
use rustc_hash::{FxHashMap, FxHasher};

/// A labelled metric family.
pub trait Family {
    type Child;
    fn child(&self, labels: &[&str]) -> Self::Child;
}

impl Family for CounterVec {
    type Child = Counter;
    fn child(&self, labels: &[&str]) -> Counter {
        self.with_label_values(labels)
    }
}

impl Family for HistogramVec {
    type Child = Histogram;
    fn child(&self, labels: &[&str]) -> Histogram {
        self.with_label_values(labels)
    }
}

/// Label sets kept per family; past this (label values taken from callers
/// can be many) lookups go to prometheus directly.
const MAX_CACHED: usize = 4096;

type Seen<M> = FxHashMap<u64, Vec<(Box<[Box<str>]>, M)>>;

pub struct Children<F: Family> {
    family: F,
    seen: RwLock<Seen<F::Child>>,
}

impl<F: Family> Children<F> {
    /// Runs `f` on the child with these label values.
    pub fn with<R>(&self, labels: &[&str], f: impl FnOnce(&F::Child) -> R) -> R {
        let mut h = FxHasher::default();
        for l in labels {
            l.hash(&mut h);
        }
        let key = h.finish();
        let same = |l: &[Box<str>]| {
            l.len() == labels.len() && l.iter().zip(labels).all(|(a, b)| **a == **b)
        };
        {
            let seen = self.seen.read().unwrap_or_else(|e| e.into_inner());
            if let Some((_, m)) = seen.get(&key).and_then(|v| v.iter().find(|(l, _)| same(l))) {
                return f(m);
            }
        }
        let m = self.family.child(labels);
        let r = f(&m);
        let mut seen = self.seen.write().unwrap_or_else(|e| e.into_inner());
        if seen.len() < MAX_CACHED {
            let slot = seen.entry(key).or_default();
            if !slot.iter().any(|(l, _)| same(l)) {
                slot.push((labels.iter().map(|l| Box::from(*l)).collect(), m));
            }
        }
        r
    }
}

impl<F: Family> From<F> for Children<F> {
    fn from(family: F) -> Self {
        Children {
            family,
            seen: RwLock::default(),
        }
    }
}

/// Everything else (registration, reading, removal) is the family's own.
impl<F: Family> Deref for Children<F> {
    type Target = F;
    fn deref(&self) -> &F {
        &self.family
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Opts;

    #[test]
    fn same_child_as_prometheus_gives() {
        let c: Children<_> = CounterVec::new(Opts::new("c", "h"), &["a", "b"])
            .unwrap()
            .into();
        for _ in 0..3 {
            c.with(&["x", "y"], |m| m.inc());
        }
        c.with(&["x", "z"], |m| m.inc());
        assert_eq!(c.with_label_values(&["x", "y"]).get(), 3.0);
        assert_eq!(c.with_label_values(&["x", "z"]).get(), 1.0);
        c.with_label_values(&["x", "y"]).inc();
        assert_eq!(c.with(&["x", "y"], |m| m.get()), 4.0);
    }
}
