//! The applied jobs in memory: by key, and by next tick for the trigger
//! loop (so finding due jobs never scans every job).

use std::collections::{BTreeSet, HashMap};

use crate::model::JobRecord;

#[derive(Default)]
pub struct Jobs {
    by_key: HashMap<String, JobRecord>,
    by_due: BTreeSet<(i64, String)>,
}

impl Jobs {
    pub fn get(&self, key: &str) -> Option<&JobRecord> {
        self.by_key.get(key)
    }

    pub fn put(&mut self, rec: JobRecord) {
        let k = rec.key.storage_key();
        self.by_due.insert((rec.next_ms, k.clone()));
        if let Some(old) = self.by_key.insert(k.clone(), rec) {
            if old.next_ms != self.by_key[&k].next_ms {
                self.by_due.remove(&(old.next_ms, k));
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<JobRecord> {
        let old = self.by_key.remove(key)?;
        self.by_due.remove(&(old.next_ms, key.to_string()));
        Some(old)
    }

    /// Keys starting with `prefix`.
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.by_key
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    pub fn with_prefix(&self, prefix: &str) -> Vec<JobRecord> {
        let mut v: Vec<JobRecord> = self
            .by_key
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, r)| r.clone())
            .collect();
        v.sort_by(|a, b| a.key.name.cmp(&b.key.name));
        v
    }

    /// Jobs due at or before `now_ms`, earliest first.
    pub fn due(&self, now_ms: i64, limit: usize) -> Vec<JobRecord> {
        self.by_due
            .iter()
            .take_while(|(t, _)| *t <= now_ms)
            .filter_map(|(_, k)| self.by_key.get(k).cloned())
            .take(limit)
            .collect()
    }

    /// When the earliest job is due.
    pub fn earliest(&self) -> Option<i64> {
        self.by_due.iter().next().map(|(t, _)| *t)
    }

    pub fn all(&self) -> impl Iterator<Item = &JobRecord> {
        self.by_key.values()
    }

    pub fn clear(&mut self) {
        self.by_key.clear();
        self.by_due.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobKey, JobSpec};

    fn rec(name: &str, next: i64) -> JobRecord {
        JobRecord {
            key: JobKey {
                namespace: "ns".into(),
                app_id: "a".into(),
                name: name.into(),
            },
            spec: JobSpec::default(),
            created_ms: 0,
            next_ms: next,
            expires_ms: None,
            fired: 0,
            attempt: 0,
        }
    }

    #[test]
    fn due_index_follows_updates() {
        let mut j = Jobs::default();
        j.put(rec("x", 10));
        j.put(rec("y", 5));
        assert_eq!(j.earliest(), Some(5));
        j.put(rec("y", 20));
        assert_eq!(j.due(15, 10).len(), 1);
        assert_eq!(j.earliest(), Some(10));
        j.remove(&rec("x", 0).key.storage_key());
        assert_eq!(j.earliest(), Some(20));
        assert_eq!(j.all().count(), 1);
    }
}
