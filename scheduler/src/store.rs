//! openraft's storage on one SQLite file: the log (`log`), the vote and
//! other raft bookkeeping (`meta`), and the state machine (`jobs`, plus the
//! applied log id and membership in `meta`, written in the same
//! transaction as the jobs they describe, so a restart never re-applies or
//! skips an entry). WAL with `synchronous=FULL` for the log and the vote:
//! an append is on disk before openraft is told it is, which is what a vote
//! or an acknowledgement relies on. State-machine writes skip their own
//! fsync (`with_db_relaxed`).
//!
//! SQLite calls block; they run under `block_in_place` (the scheduler's
//! runtime is multi-threaded and does nothing else on these threads).

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership, Vote,
};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::jobs::Jobs;
use crate::model::{Command, JobRecord, Outcome};
use crate::schedule::after_tick;
use crate::{NodeId, TypeConfig};

type Db = Arc<Mutex<Connection>>;
type SResult<T> = Result<T, StorageError<NodeId>>;
type Membership = StoredMembership<NodeId, openraft::BasicNode>;

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read(&e).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write(&e).into()
}

fn with_db<T>(
    db: &Db,
    f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    tokio::task::block_in_place(|| {
        let mut c = db.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c)
    })
}

/// As [`with_db`], committing without an fsync of its own: for writes that
/// are redone from the log if lost (the state machine, the commit index).
/// WAL frames reach the disk in order, so the next log append's fsync
/// makes these durable too, before anything that depends on them.
fn with_db_relaxed<T>(
    db: &Db,
    f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    with_db(db, |c| {
        c.pragma_update(None, "synchronous", "NORMAL")?;
        let r = f(c);
        c.pragma_update(None, "synchronous", "FULL")?;
        r
    })
}

fn meta_get<T: for<'de> Deserialize<'de>>(c: &Connection, k: &str) -> rusqlite::Result<Option<T>> {
    let v: Option<String> = c
        .query_row("SELECT v FROM meta WHERE k = ?1", [k], |r| r.get(0))
        .optional()?;
    Ok(v.and_then(|s| serde_json::from_str(&s).ok()))
}

fn meta_put<T: Serialize>(c: &Connection, k: &str, v: &T) -> rusqlite::Result<()> {
    let s = serde_json::to_string(v)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    c.execute(
        "INSERT INTO meta (k, v) VALUES (?1, ?2) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
        params![k, s],
    )?;
    Ok(())
}

/// Opens (creating) `DIR/scheduler.db`.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachine), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("scheduler.db");
    let c = Connection::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    c.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS log (idx INTEGER PRIMARY KEY, entry TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS jobs (k TEXT PRIMARY KEY, v TEXT NOT NULL);",
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut jobs = Jobs::default();
    {
        let mut st = c.prepare("SELECT v FROM jobs").map_err(|e| e.to_string())?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| e.to_string())?;
        for row in rows {
            let s = row.map_err(|e| e.to_string())?;
            let rec: JobRecord = serde_json::from_str(&s).map_err(|e| e.to_string())?;
            jobs.put(rec);
        }
    }
    let applied: Option<LogId<NodeId>> = meta_get(&c, "applied").map_err(|e| e.to_string())?;
    let membership: Membership = meta_get(&c, "membership")
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let db = Arc::new(Mutex::new(c));
    Ok((
        LogStore { db: db.clone() },
        StateMachine {
            db,
            jobs: Arc::new(RwLock::new(jobs)),
            applied,
            membership,
            changed: Arc::new(Notify::new()),
        },
    ))
}

#[derive(Clone)]
pub struct LogStore {
    db: Db,
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> SResult<Vec<Entry<TypeConfig>>> {
        let lo = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let hi = match range.end_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_sub(1),
            Bound::Unbounded => i64::MAX as u64,
        };
        if matches!(range.end_bound(), Bound::Excluded(0)) {
            return Ok(Vec::new());
        }
        let lo = i64::try_from(lo).unwrap_or(i64::MAX);
        let hi = i64::try_from(hi).unwrap_or(i64::MAX);
        let rows = with_db(&self.db, |c| {
            let mut st = c.prepare_cached(
                "SELECT entry FROM log WHERE idx >= ?1 AND idx <= ?2 ORDER BY idx",
            )?;
            let rows = st.query_map(params![lo, hi], |r| r.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(read_err)?;
        rows.iter()
            .map(|s| serde_json::from_str(s).map_err(|e| StorageIOError::read_logs(&e).into()))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> SResult<LogState<TypeConfig>> {
        let (last, purged) = with_db(&self.db, |c| {
            let last: Option<String> = c
                .query_row("SELECT entry FROM log ORDER BY idx DESC LIMIT 1", [], |r| {
                    r.get(0)
                })
                .optional()?;
            let purged: Option<LogId<NodeId>> = meta_get(c, "last_purged")?;
            Ok((last, purged))
        })
        .map_err(read_err)?;
        let last = match last {
            Some(s) => Some(
                serde_json::from_str::<Entry<TypeConfig>>(&s)
                    .map_err(|e| StorageError::from(StorageIOError::read_logs(&e)))?
                    .log_id,
            ),
            None => purged,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> SResult<()> {
        with_db(&self.db, |c| meta_put(c, "vote", vote))
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> SResult<Option<Vote<NodeId>>> {
        with_db(&self.db, |c| meta_get(c, "vote")).map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> SResult<()> {
        with_db_relaxed(&self.db, |c| meta_put(c, "committed", &committed)).map_err(write_err)
    }

    async fn read_committed(&mut self) -> SResult<Option<LogId<NodeId>>> {
        with_db(&self.db, |c| {
            meta_get::<Option<LogId<NodeId>>>(c, "committed")
        })
        .map(Option::flatten)
        .map_err(read_err)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> SResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for e in entries {
            let s = serde_json::to_string(&e).map_err(|e| StorageIOError::write_logs(&e))?;
            rows.push((e.log_id.index, s));
        }
        let r = with_db(&self.db, |c| {
            let tx = c.transaction()?;
            {
                let mut st =
                    tx.prepare_cached("INSERT OR REPLACE INTO log (idx, entry) VALUES (?1, ?2)")?;
                for (i, s) in &rows {
                    st.execute(params![i64::try_from(*i).unwrap_or(i64::MAX), s])?;
                }
            }
            tx.commit()
        });
        match r {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let io = std::io::Error::other(e.to_string());
                callback.log_io_completed(Err(io));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> SResult<()> {
        let i = i64::try_from(log_id.index).unwrap_or(i64::MAX);
        with_db(&self.db, |c| {
            c.execute("DELETE FROM log WHERE idx >= ?1", [i])
                .map(|_| ())
        })
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> SResult<()> {
        let i = i64::try_from(log_id.index).unwrap_or(i64::MAX);
        with_db(&self.db, |c| {
            let tx = c.transaction()?;
            meta_put(&tx, "last_purged", &log_id)?;
            tx.execute("DELETE FROM log WHERE idx <= ?1", [i])?;
            tx.commit()
        })
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

/// The state machine: the jobs (on disk and in memory) and what was applied.
pub struct StateMachine {
    db: Db,
    pub jobs: Arc<RwLock<Jobs>>,
    applied: Option<LogId<NodeId>>,
    membership: Membership,
    /// Woken after every apply: the trigger loop re-reads the due index.
    pub changed: Arc<Notify>,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    data: Vec<u8>,
}

/// A change to the jobs an entry makes, written to disk, then to memory.
enum Change {
    Put(Box<JobRecord>),
    Remove(String),
}

impl StateMachine {
    fn plan(&self, cmd: &Command, pending: &[Change]) -> (Vec<Change>, Outcome) {
        let jobs = self.jobs.read().unwrap_or_else(|p| p.into_inner());
        // An entry in the same batch may have changed the key already.
        let lookup = |k: &str| -> Option<JobRecord> {
            for ch in pending.iter().rev() {
                match ch {
                    Change::Put(r) if r.key.storage_key() == k => return Some((**r).clone()),
                    Change::Remove(x) if x == k => return None,
                    _ => {}
                }
            }
            jobs.get(k).cloned()
        };
        match cmd {
            Command::Put { record, overwrite } => {
                let k = record.key.storage_key();
                if !overwrite && lookup(&k).is_some() {
                    return (Vec::new(), Outcome::Exists);
                }
                (vec![Change::Put(Box::new(record.clone()))], Outcome::Done)
            }
            Command::Delete { key } => (vec![Change::Remove(key.storage_key())], Outcome::Done),
            Command::DeletePrefix { prefix } => {
                let mut keys = jobs.keys_with_prefix(prefix);
                for ch in pending {
                    if let Change::Put(r) = ch {
                        let k = r.key.storage_key();
                        if k.starts_with(prefix.as_str()) {
                            keys.push(k);
                        }
                    }
                }
                (
                    keys.into_iter().map(Change::Remove).collect(),
                    Outcome::Done,
                )
            }
            Command::Ticked {
                key,
                due_ms,
                now_ms,
                ok,
            } => {
                let k = key.storage_key();
                match lookup(&k) {
                    Some(r) if r.next_ms == *due_ms => {
                        match after_tick(&r, *due_ms, *now_ms, *ok) {
                            Some(n) => (vec![Change::Put(Box::new(n))], Outcome::Done),
                            None => (vec![Change::Remove(k)], Outcome::Done),
                        }
                    }
                    _ => (Vec::new(), Outcome::Done),
                }
            }
            Command::Expire { key, due_ms } => {
                let k = key.storage_key();
                match lookup(&k) {
                    Some(r) if r.next_ms == *due_ms => (vec![Change::Remove(k)], Outcome::Done),
                    _ => (Vec::new(), Outcome::Done),
                }
            }
        }
    }

    fn replace_all(
        &mut self,
        jobs: Vec<JobRecord>,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
    ) -> SResult<()> {
        let applied = meta.last_log_id;
        let membership = meta.last_membership.clone();
        with_db(&self.db, |c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM jobs", [])?;
            {
                let mut st = tx.prepare_cached("INSERT INTO jobs (k, v) VALUES (?1, ?2)")?;
                for r in &jobs {
                    let s = serde_json::to_string(r)
                        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                    st.execute(params![r.key.storage_key(), s])?;
                }
            }
            meta_put(&tx, "applied", &applied)?;
            meta_put(&tx, "membership", &membership)?;
            tx.commit()
        })
        .map_err(write_err)?;
        let mut m = self.jobs.write().unwrap_or_else(|p| p.into_inner());
        m.clear();
        for r in jobs {
            m.put(r);
        }
        drop(m);
        self.applied = applied;
        self.membership = membership;
        self.changed.notify_one();
        Ok(())
    }
}

/// Builds a snapshot from the jobs in memory at the time it is asked for.
pub struct SnapshotBuilder {
    jobs: Vec<JobRecord>,
    applied: Option<LogId<NodeId>>,
    membership: Membership,
    db: Db,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> SResult<Snapshot<TypeConfig>> {
        let data =
            serde_json::to_vec(&self.jobs).map_err(|e| StorageIOError::read_state_machine(&e))?;
        let snapshot_id = match self.applied {
            Some(l) => format!("{}-{}", l.leader_id, l.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        with_db(&self.db, |c| meta_put(c, "snapshot", &stored))
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> SResult<(Option<LogId<NodeId>>, Membership)> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> SResult<Vec<Outcome>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut changes: Vec<Change> = Vec::new();
        let mut out = Vec::new();
        let mut applied = self.applied;
        let mut membership = self.membership.clone();
        for e in entries {
            applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => out.push(Outcome::Done),
                EntryPayload::Normal(cmd) => {
                    let (ch, o) = self.plan(&cmd, &changes);
                    changes.extend(ch);
                    out.push(o);
                }
                EntryPayload::Membership(m) => {
                    membership = StoredMembership::new(Some(e.log_id), m);
                    out.push(Outcome::Done);
                }
            }
        }
        with_db_relaxed(&self.db, |c| {
            let tx = c.transaction()?;
            {
                let mut put =
                    tx.prepare_cached("INSERT OR REPLACE INTO jobs (k, v) VALUES (?1, ?2)")?;
                let mut del = tx.prepare_cached("DELETE FROM jobs WHERE k = ?1")?;
                for ch in &changes {
                    match ch {
                        Change::Put(r) => {
                            let s = serde_json::to_string(r).map_err(|e| {
                                rusqlite::Error::ToSqlConversionFailure(Box::new(e))
                            })?;
                            put.execute(params![r.key.storage_key(), s])?;
                        }
                        Change::Remove(k) => {
                            del.execute([k])?;
                        }
                    }
                }
            }
            meta_put(&tx, "applied", &applied)?;
            meta_put(&tx, "membership", &membership)?;
            tx.commit()
        })
        .map_err(|e| StorageIOError::write_state_machine(&e))?;
        {
            let mut m = self.jobs.write().unwrap_or_else(|p| p.into_inner());
            for ch in changes {
                match ch {
                    Change::Put(r) => m.put(*r),
                    Change::Remove(k) => {
                        m.remove(&k);
                    }
                }
            }
        }
        self.applied = applied;
        self.membership = membership;
        self.changed.notify_one();
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let jobs = self.jobs.read().unwrap_or_else(|p| p.into_inner());
        SnapshotBuilder {
            jobs: jobs.all().cloned().collect(),
            applied: self.applied,
            membership: self.membership.clone(),
            db: self.db.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> SResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> SResult<()> {
        let data = snapshot.into_inner();
        let jobs: Vec<JobRecord> = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        self.replace_all(jobs, meta)?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        with_db(&self.db, |c| meta_put(c, "snapshot", &stored))
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> SResult<Option<Snapshot<TypeConfig>>> {
        let s: Option<StoredSnapshot> =
            with_db(&self.db, |c| meta_get(c, "snapshot")).map_err(read_err)?;
        Ok(s.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobKey, JobSpec, Payload};
    use openraft::CommittedLeaderId;

    fn entry(index: u64, cmd: Command) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(cmd),
        }
    }

    fn record(name: &str, next_ms: i64) -> JobRecord {
        JobRecord {
            key: JobKey {
                namespace: "default".into(),
                app_id: "app".into(),
                name: name.into(),
            },
            spec: JobSpec {
                schedule: Some("@every 1s".into()),
                data: Some(Payload {
                    type_url: "t".into(),
                    value: vec![0, 1, 2, 255],
                }),
                ..Default::default()
            },
            created_ms: 0,
            next_ms,
            expires_ms: None,
            fired: 0,
            attempt: 0,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn applied_jobs_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut sm) = open(dir.path()).unwrap();
        let out = sm
            .apply(vec![
                entry(
                    1,
                    Command::Put {
                        record: record("a", 1000),
                        overwrite: false,
                    },
                ),
                entry(
                    2,
                    Command::Put {
                        record: record("a", 1000),
                        overwrite: false,
                    },
                ),
                entry(
                    3,
                    Command::Put {
                        record: record("b", 2000),
                        overwrite: false,
                    },
                ),
                entry(
                    4,
                    Command::Ticked {
                        key: record("a", 0).key,
                        due_ms: 1000,
                        now_ms: 1001,
                        ok: true,
                    },
                ),
                // A duplicate answer for the same tick changes nothing.
                entry(
                    5,
                    Command::Ticked {
                        key: record("a", 0).key,
                        due_ms: 1000,
                        now_ms: 1002,
                        ok: true,
                    },
                ),
                entry(
                    6,
                    Command::DeletePrefix {
                        prefix: "app||default||app||b".into(),
                    },
                ),
            ])
            .await
            .unwrap();
        assert_eq!(out[1], Outcome::Exists);
        drop(sm);
        let (_, mut sm) = open(dir.path()).unwrap();
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(6));
        let jobs = sm.jobs.read().unwrap();
        let a = jobs.get(&record("a", 0).key.storage_key()).unwrap();
        assert_eq!((a.next_ms, a.fired), (2000, 1));
        assert_eq!(a.spec.data.as_ref().unwrap().value, vec![0, 1, 2, 255]);
        assert!(jobs.get(&record("b", 0).key.storage_key()).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn log_append_truncate_purge() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path()).unwrap();
        let entries: Vec<_> = (1..=5)
            .map(|i| {
                entry(
                    i,
                    Command::Delete {
                        key: record("x", 0).key,
                    },
                )
            })
            .collect();
        // Written straight to the table: openraft alone makes the
        // `LogFlushed` callback `append` takes.
        for e in entries {
            let s = serde_json::to_string(&e).unwrap();
            let idx = e.log_id.index as i64;
            with_db(&log.db, |c| {
                c.execute(
                    "INSERT INTO log (idx, entry) VALUES (?1, ?2)",
                    params![idx, s],
                )
                .map(|_| ())
            })
            .unwrap();
        }
        assert_eq!(log.try_get_log_entries(2..4).await.unwrap().len(), 2);
        log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 4))
            .await
            .unwrap();
        log.purge(LogId::new(CommittedLeaderId::new(1, 1), 1))
            .await
            .unwrap();
        let st = log.get_log_state().await.unwrap();
        assert_eq!(st.last_log_id.map(|l| l.index), Some(3));
        assert_eq!(st.last_purged_log_id.map(|l| l.index), Some(1));
        assert_eq!(log.try_get_log_entries(..).await.unwrap().len(), 2);
    }
}
