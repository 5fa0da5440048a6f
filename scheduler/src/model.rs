//! What the replicated state machine holds: jobs by (namespace, app id,
//! name), and the commands that change them. Every command carries the
//! leader's clock readings, so applying it is deterministic on every node.

use serde::{Deserialize, Serialize};

/// A job's identity. Its storage key is Dapr's (`app||ns||app-id||name`), so
/// an app's jobs are one key prefix.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct JobKey {
    pub namespace: String,
    pub app_id: String,
    pub name: String,
}

impl JobKey {
    pub fn storage_key(&self) -> String {
        format!("{}{}", app_prefix(&self.namespace, &self.app_id), self.name)
    }
}

/// The key prefix of every job of one app.
pub fn app_prefix(namespace: &str, app_id: &str) -> String {
    format!("app||{namespace}||{app_id}||")
}

/// What to do when the app fails a tick.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum FailurePolicy {
    Drop,
    Constant {
        interval_ms: u64,
        max_retries: Option<u32>,
    },
}

/// daprd's default when a job names no policy: three retries a second apart.
pub const DEFAULT_POLICY: FailurePolicy = FailurePolicy::Constant {
    interval_ms: 1000,
    max_retries: Some(3),
};

/// `google.protobuf.Any`, kept as it came.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Payload {
    pub type_url: String,
    /// Base64 in the log and snapshots (JSON would spell a byte as up to
    /// four characters and a comma).
    #[serde(with = "b64")]
    pub value: Vec<u8>,
}

mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// The job as the client gave it (returned by GetJob as given).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct JobSpec {
    pub schedule: Option<String>,
    pub repeats: Option<u32>,
    pub due_time: Option<String>,
    pub ttl: Option<String>,
    pub data: Option<Payload>,
    pub failure_policy: Option<FailurePolicy>,
}

/// A stored job and where it is in its life.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JobRecord {
    pub key: JobKey,
    pub spec: JobSpec,
    /// When it was scheduled (leader's clock, ms since the epoch): the base
    /// of duration-valued `dueTime` and `ttl`.
    pub created_ms: i64,
    /// The tick (or retry) due next.
    pub next_ms: i64,
    pub expires_ms: Option<i64>,
    /// Ticks consumed (delivered, dropped or out of retries).
    pub fired: u32,
    /// Retries of the current tick so far.
    pub attempt: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub enum Command {
    Put {
        record: JobRecord,
        overwrite: bool,
    },
    Delete {
        key: JobKey,
    },
    DeletePrefix {
        prefix: String,
    },
    /// The app answered the tick due at `due_ms` (`ok`), or failed it. A
    /// tick already recorded (a duplicate answer) changes nothing.
    Ticked {
        key: JobKey,
        due_ms: i64,
        now_ms: i64,
        ok: bool,
    },
    /// The job's ttl passed before its next tick.
    Expire {
        key: JobKey,
        due_ms: i64,
    },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub enum Outcome {
    #[default]
    Done,
    /// Put without overwrite of a name in use.
    Exists,
}
