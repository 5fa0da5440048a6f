//! Dapr's Redis connection metadata (`redisHost`, `redisPassword`,
//! `redisUsername`, `redisDB`, `enableTLS`, timeouts), read once for every
//! Redis component: state, pub/sub, lock, configuration.

use std::time::Duration;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use spar_config::Component;

use super::{Endpoint, Limits};
use crate::build::BuildError;
use crate::meta::Meta;

/// Where and how to connect.
pub fn endpoint(c: &Component) -> Result<Endpoint, BuildError> {
    let m = Meta::new(c);
    let host = m
        .str("redisHost")
        .filter(|h| !h.trim().is_empty())
        .ok_or_else(|| m.error("redisHost", "is required (host:port)"))?;
    let host = host.trim();
    if host.contains('/') || host.contains('@') {
        return Err(m.error("redisHost", format!("{host:?} must be host:port")));
    }
    let db: i64 = m.int("redisDB", 0)?;
    if db < 0 {
        return Err(m.error("redisDB", format!("{db} must be a database number")));
    }
    if let Some(t) = m
        .str("redisType")
        .filter(|t| !t.eq_ignore_ascii_case("node"))
    {
        return Err(m.error(
            "redisType",
            format!("{t:?} is not supported yet (only node)"),
        ));
    }
    if m.bool("failover", false)? {
        return Err(m.error("failover", "Sentinel failover is not supported yet"));
    }
    Ok(Endpoint {
        host: host.to_string(),
        tls: m.bool("enableTLS", false)?,
        db,
        username: m.str("redisUsername"),
        password: m.str("redisPassword"),
    })
}

/// Call bounds: `dialTimeout` (5 s), `readTimeout` (3 s), `maxRetries` (3),
/// `maxRetryBackoff` (2 s), daprd's defaults.
pub fn limits(c: &Component) -> Result<Limits, BuildError> {
    let m = Meta::new(c);
    Ok(Limits {
        dial: m.duration("dialTimeout", Duration::from_secs(5))?,
        read: m.duration("readTimeout", Duration::from_secs(3))?,
        retries: m.int("maxRetries", 3)?,
        max_backoff: m.duration("maxRetryBackoff", Duration::from_secs(2))?,
    })
}

/// The `redis` crate's connection URL for the same endpoint.
pub fn connection_url(c: &Component) -> Result<String, BuildError> {
    let e = endpoint(c)?;
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let auth = match (&e.username, &e.password) {
        (Some(u), Some(p)) => format!("{}:{}@", enc(u), enc(p)),
        (_, Some(p)) => format!(":{}@", enc(p)),
        _ => String::new(),
    };
    let scheme = if e.tls { "rediss" } else { "redis" };
    Ok(format!("{scheme}://{auth}{}/{}", e.host, e.db))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_from_daprs_names() {
        let c = Component::new(
            "r",
            "state.redis",
            &[
                ("redisHost", "h:6380"),
                ("redisPassword", "p@ss"),
                ("redisDB", "2"),
                ("enableTLS", "true"),
            ],
        );
        let e = endpoint(&c).unwrap();
        assert_eq!((e.host.as_str(), e.db, e.tls), ("h:6380", 2, true));
        assert_eq!(connection_url(&c).unwrap(), "rediss://:p%40ss@h:6380/2");
        for (k, v) in [
            ("redisHost", "redis://h"),
            ("redisDB", "-1"),
            ("enableTLS", "maybe"),
            ("redisType", "cluster"),
        ] {
            let mut meta = vec![("redisHost", "h:1")];
            meta.retain(|(n, _)| *n != k);
            meta.push((k, v));
            let e = endpoint(&Component::new("r", "state.redis", &meta)).unwrap_err();
            assert!(e.to_string().contains(k), "{k}: {e}");
        }
        assert!(endpoint(&Component::new("r", "state.redis", &[])).is_err());
    }
}
