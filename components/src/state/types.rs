use std::collections::HashMap;
use std::time::SystemTime;

/// Optional capabilities of a state store, as Dapr names them in metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    pub etag: bool,
    pub transactional: bool,
    pub ttl: bool,
    pub query: bool,
}

impl Features {
    /// Every optional capability.
    pub const ALL: Features = Features {
        etag: true,
        transactional: true,
        ttl: true,
        query: true,
    };

    /// Dapr's capability names, in Dapr's order, as its metadata API lists them.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.etag {
            v.push("ETAG");
        }
        if self.transactional {
            v.push("TRANSACTIONAL");
        }
        if self.ttl {
            v.push("TTL");
        }
        if self.query {
            v.push("QUERY_API");
        }
        // daprd's runtime adds ACTOR for a store that can hold actor state.
        if self.etag && self.transactional {
            v.push("ACTOR");
        }
        v
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Concurrency {
    /// Dapr's default: an ETag, when given, must match; none means overwrite.
    #[default]
    LastWrite,
    /// An ETag must match; with no ETag the write succeeds only if the key
    /// does not exist yet.
    FirstWrite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    #[default]
    Eventual,
    Strong,
}

/// A stored value as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub data: Vec<u8>,
    pub etag: Option<String>,
    /// When the value expires, for stores with the TTL feature.
    pub expires_at: Option<SystemTime>,
}

#[derive(Debug, Clone, Default)]
pub struct GetRequest {
    pub key: String,
    pub consistency: Consistency,
    pub metadata: HashMap<String, String>,
}

impl GetRequest {
    pub fn new(key: impl Into<String>) -> Self {
        GetRequest {
            key: key.into(),
            ..Default::default()
        }
    }
}

/// One entry of a bulk read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkItem {
    pub key: String,
    /// `None` when the key does not exist.
    pub item: Option<Item>,
    pub error: Option<String>,
}

impl BulkItem {
    pub fn found(key: String, item: Option<Item>) -> Self {
        BulkItem {
            key,
            item,
            error: None,
        }
    }
    pub fn failed(key: String, error: String) -> Self {
        BulkItem {
            key,
            item: None,
            error: Some(error),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SetRequest {
    pub key: String,
    pub value: Vec<u8>,
    pub etag: Option<String>,
    pub concurrency: Concurrency,
    pub consistency: Consistency,
    /// Time to live. `None`: the store's default (usually forever).
    pub ttl: Option<Ttl>,
    pub metadata: HashMap<String, String>,
}

/// A TTL as Dapr's `ttlInSeconds` expresses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// Expire after this many seconds (> 0).
    Seconds(u64),
    /// `-1`: never expire, even if the store has a default TTL.
    Never,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteRequest {
    pub key: String,
    pub etag: Option<String>,
    pub concurrency: Concurrency,
    pub metadata: HashMap<String, String>,
}

/// One operation of a transaction.
#[derive(Debug, Clone)]
pub enum Operation {
    Upsert(SetRequest),
    Delete(DeleteRequest),
}

impl Operation {
    pub fn key(&self) -> &str {
        match self {
            Operation::Upsert(r) => &r.key,
            Operation::Delete(r) => &r.key,
        }
    }
}
