//! spar-configbench: configuration change → delivery latency on Redis,
//! measured in one process that both writes and receives (one clock).
//!
//!   spar-configbench spar GRPC_ADDR STORE REDIS_URL [opts]
//!       receives through spar: a gRPC `SubscribeConfiguration` stream on
//!       the sidecar's `configuration.redis` store STORE.
//!   spar-configbench direct REDIS_URL [opts]
//!       the backend's own client: `SUBSCRIBE __keyspace@0__:KEY` and a
//!       `GET` per notification (what an app watching Redis itself does).
//!
//! Both write the same changes with the `redis` crate: `SET KEY
//! "v{i}||{i}"`, one every --interval-ms (default 5, so changes do not
//! coalesce), --count times (default 200). Latency is from the write's
//! return to the change's arrival.
//! Prints one line: `changes delivered p50_ms p90_ms p99_ms max_ms`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use spar_proto::runtime::dapr_client::DaprClient;
use spar_proto::runtime::SubscribeConfigurationRequest;

type Times = Arc<Mutex<HashMap<u64, Instant>>>;

struct Opts {
    count: u64,
    interval: Duration,
}

fn parse_opts(rest: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        count: 200,
        interval: Duration::from_millis(5),
    };
    let mut a = rest.iter();
    while let Some(x) = a.next() {
        let v = a.next().ok_or(format!("{x} needs a value"))?;
        match x.as_str() {
            "--count" => o.count = v.parse().map_err(|e| format!("--count: {e}"))?,
            "--interval-ms" => {
                o.interval =
                    Duration::from_millis(v.parse().map_err(|e| format!("--interval-ms: {e}"))?)
            }
            other => return Err(format!("unexpected argument {other}")),
        }
    }
    Ok(o)
}

/// `v{i}` → i.
fn seq(value: &str) -> Option<u64> {
    value.strip_prefix('v')?.parse().ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn write_all(redis_url: &str, key: &str, o: &Opts, written: &Times) -> Result<(), String> {
    let client = redis::Client::open(redis_url).map_err(|e| e.to_string())?;
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let mut tick = tokio::time::interval(o.interval);
    for i in 1..=o.count {
        tick.tick().await;
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(format!("v{i}||{i}"))
            .query_async(&mut c)
            .await
            .map_err(|e| e.to_string())?;
        written.lock().unwrap().insert(i, Instant::now());
    }
    Ok(())
}

async fn run() -> Result<String, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().ok_or("missing mode: spar | direct")?.clone();
    let received: Times = Arc::default();
    let written: Times = Arc::default();
    let key = format!("configbench-{}", std::process::id());
    let (redis_url, o) = match mode.as_str() {
        "spar" => {
            let [_, addr, store, redis_url, rest @ ..] = args.as_slice() else {
                return Err("spar GRPC_ADDR STORE REDIS_URL [opts]".into());
            };
            let o = parse_opts(rest)?;
            let uri = if addr.contains("://") {
                addr.clone()
            } else {
                format!("http://{addr}")
            };
            let mut client = DaprClient::connect(uri).await.map_err(|e| e.to_string())?;
            let mut stream = client
                .subscribe_configuration(SubscribeConfigurationRequest {
                    store_name: store.clone(),
                    keys: vec![key.clone()],
                    metadata: Default::default(),
                })
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            // The first message carries the id: the subscription is in place.
            stream
                .message()
                .await
                .map_err(|e| e.to_string())?
                .ok_or("stream ended")?;
            let (rx, k) = (received.clone(), key.clone());
            tokio::spawn(async move {
                while let Ok(Some(m)) = stream.message().await {
                    let now = Instant::now();
                    if let Some(i) = m.items.get(&k).and_then(|it| seq(&it.value)) {
                        rx.lock().unwrap().entry(i).or_insert(now);
                    }
                }
            });
            (redis_url.clone(), o)
        }
        "direct" => {
            let [_, redis_url, rest @ ..] = args.as_slice() else {
                return Err("direct REDIS_URL [opts]".into());
            };
            let o = parse_opts(rest)?;
            let client = redis::Client::open(redis_url.as_str()).map_err(|e| e.to_string())?;
            let mut get = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| e.to_string())?;
            let mut ps = client.get_async_pubsub().await.map_err(|e| e.to_string())?;
            // Keyspace events for strings, added to the server's flags.
            let (_, mut flags): (String, String) = redis::cmd("CONFIG")
                .arg("GET")
                .arg("notify-keyspace-events")
                .query_async(&mut get)
                .await
                .map_err(|e| e.to_string())?;
            if !flags.contains('K') {
                flags.push('K');
            }
            if !flags.contains('$') && !flags.contains('A') {
                flags.push('$');
            }
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg("notify-keyspace-events")
                .arg(flags)
                .query_async(&mut get)
                .await
                .map_err(|e| e.to_string())?;
            ps.subscribe(format!("__keyspace@0__:{key}"))
                .await
                .map_err(|e| e.to_string())?;
            let (rx, k) = (received.clone(), key.clone());
            tokio::spawn(async move {
                let mut messages = ps.into_on_message();
                while messages.next().await.is_some() {
                    let v: Option<String> = redis::cmd("GET")
                        .arg(&k)
                        .query_async(&mut get)
                        .await
                        .unwrap_or(None);
                    let now = Instant::now();
                    if let Some(i) = v.as_deref().and_then(|v| seq(v.split("||").next()?)) {
                        rx.lock().unwrap().entry(i).or_insert(now);
                    }
                }
            });
            (redis_url.clone(), o)
        }
        m => return Err(format!("unknown mode {m}")),
    };
    write_all(&redis_url, &key, &o, &written).await?;
    // Stragglers: up to a second after the last write.
    let deadline = Instant::now() + Duration::from_secs(1);
    while received.lock().unwrap().len() < o.count as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if let Ok(client) = redis::Client::open(redis_url.as_str()) {
        if let Ok(mut c) = client.get_multiplexed_async_connection().await {
            let _: Result<i64, _> = redis::cmd("DEL").arg(&key).query_async(&mut c).await;
        }
    }
    let (w, r) = (written.lock().unwrap(), received.lock().unwrap());
    let mut lat: Vec<f64> = r
        .iter()
        .filter_map(|(i, at)| {
            let sent = w.get(i)?;
            Some(at.saturating_duration_since(*sent).as_secs_f64() * 1000.0)
        })
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok(format!(
        "{} {} {:.3} {:.3} {:.3} {:.3}",
        o.count,
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0.0)
    ))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    match run().await {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("spar-configbench: {e}");
            std::process::exit(2);
        }
    }
}
