//! spar-jobbench: the Jobs API and `spar scheduler` under load (issue 23).
//!
//!   spar-jobbench late SIDECAR_HTTP --listen APP_PORT [--rate R] [--seconds S] [--lead-ms L]
//!       is the app (`POST /job/{name}` on APP_PORT) and the load: R×S
//!       one-shot jobs through the sidecar (`POST /v1.0-alpha1/jobs/{name}`,
//!       `dueTime` RFC 3339, the due instant in ms also in the job's data)
//!       falling due R per second, starting L ms from now (default 3 s plus
//!       a millisecond per job, so scheduling ends before the first is due).
//!       Lateness = arrival at the app − due time, one clock.
//!       Prints `p50_ms p90_ms p99_ms max_ms lost duplicates scheduling_s`.
//!   spar-jobbench http SIDECAR_HTTP [--seconds S] [--conc C]
//!       flat out: far-future one-shot jobs (`dueTime: 24h`, no data)
//!       through the sidecar's HTTP API, C in flight (default 32).
//!   spar-jobbench grpc SCHEDULER_ADDR [--count N] [--conc C]
//!       N far-future jobs (no data) straight to the scheduler's gRPC
//!       `ScheduleJob`, C in flight (default 32).
//!       Both print `jobs jobs_per_s errors`.
//! SIDECAR_HTTP and SCHEDULER_ADDR are host:port.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use spar_proto::scheduler as sp;

type H1 = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn num(args: &[String], name: &str, default: u64) -> Result<u64, String> {
    flag(args, name).map_or(Ok(default), |v| {
        v.parse().map_err(|e| format!("{name}: {e}"))
    })
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

/// RFC 3339, UTC, milliseconds.
fn rfc3339(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

async fn h1(addr: &str) -> Option<H1> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    tcp.set_nodelay(true).ok();
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(tx)
}

/// One job scheduled through the sidecar: the HTTP status (0: no answer).
async fn schedule(tx: &mut H1, addr: &str, name: &str, body: String) -> u16 {
    if tx.ready().await.is_err() {
        match h1(addr).await {
            Some(t) => *tx = t,
            None => return 0,
        }
    }
    let req = hyper::Request::post(format!("/v1.0-alpha1/jobs/{name}"))
        .header("host", addr)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    match tx.send_request(req).await {
        Ok(r) => {
            let s = r.status().as_u16();
            let _ = r.into_body().collect().await;
            s
        }
        Err(_) => 0,
    }
}

/// Until the sidecar takes a job (it has reached the scheduler), 30 s at most.
async fn until_ready(addr: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(mut tx) = h1(addr).await {
            let name = format!("probe-{}-{}", std::process::id(), now_ms() as u64);
            let s = schedule(&mut tx, addr, &name, r#"{"dueTime":"24h"}"#.into()).await;
            if s == 204 {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("the sidecar at {addr} took no job within 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Arrivals at the app: job name → (arrival ms since the epoch, body).
type Seen = Arc<Mutex<Vec<(String, f64, Bytes)>>>;

async fn app_server(l: tokio::net::TcpListener, seen: Seen) {
    loop {
        let Ok((tcp, _)) = l.accept().await else {
            continue;
        };
        tcp.set_nodelay(true).ok();
        let seen = seen.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let at = now_ms();
                        let name = req
                            .uri()
                            .path()
                            .strip_prefix("/job/")
                            .unwrap_or_default()
                            .to_string();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        seen.lock()
                            .unwrap()
                            .push((name, at, body.unwrap_or_default()));
                        Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::new())))
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// The due instant the job carries in its data: the digits after `"due":`.
fn due_of(body: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(body).ok()?;
    let i = s.find("\"due\"")? + 5;
    let rest = s[i..].trim_start_matches([':', ' ', '\\', '"']);
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

async fn late(args: &[String]) -> Result<(), String> {
    let addr = args
        .first()
        .ok_or("late SIDECAR_HTTP --listen APP_PORT")?
        .clone();
    let port = num(args, "--listen", 0)?;
    let rate = num(args, "--rate", 1000)?.max(1);
    let secs = num(args, "--seconds", 5)?;
    let n = rate * secs;
    let lead = num(args, "--lead-ms", 3000 + n)?;
    let conc = num(args, "--conc", 32)?.max(1);
    let seen: Seen = Arc::default();
    let l = tokio::net::TcpListener::bind(("127.0.0.1", port as u16))
        .await
        .map_err(|e| format!("listen on {port}: {e}"))?;
    tokio::spawn(app_server(l, seen.clone()));
    until_ready(&addr).await?;
    let start = now_ms() as u64 + lead;
    let due = move |i: u64| start + i * 1000 / rate;
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..conc {
        let (addr, next, failed) = (addr.clone(), next.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let Some(mut tx) = h1(&addr).await else {
                return;
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let d = due(i);
                let body = format!(r#"{{"dueTime":"{}","data":{{"due":{d}}}}}"#, rfc3339(d));
                if schedule(&mut tx, &addr, &format!("late-{i}"), body).await != 204 {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let took = t0.elapsed().as_secs_f64();
    let failed = failed.load(Ordering::Relaxed);
    if now_ms() as u64 > start {
        eprintln!("scheduling took {took:.1} s, longer than the lead ({lead} ms): raise --lead-ms");
    }
    if failed > 0 {
        eprintln!("{failed} of {n} jobs not scheduled");
    }
    // Every arrival, or 10 s past the last due time.
    let end = due(n.saturating_sub(1)) as f64 + 10_000.0;
    while now_ms() < end {
        if seen.lock().unwrap().len() as u64 >= n - failed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = seen.lock().unwrap();
    let mut first: HashMap<&str, f64> = HashMap::new();
    let mut dups = 0u64;
    for (name, at, body) in seen.iter() {
        if !name.starts_with("late-") {
            continue;
        }
        let Some(d) = due_of(body) else {
            return Err(format!(
                "no due time in the data of {name}: {:?}",
                String::from_utf8_lossy(body)
            ));
        };
        if first.insert(name, at - d as f64).is_some() {
            dups += 1;
        }
    }
    let mut lat: Vec<f64> = first.values().copied().collect();
    lat.sort_by(f64::total_cmp);
    println!(
        "{:.1} {:.1} {:.1} {:.1} {} {} {:.2}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN),
        n - lat.len() as u64,
        dups,
        took
    );
    Ok(())
}

async fn http_rate(args: &[String]) -> Result<(), String> {
    let addr = args.first().ok_or("http SIDECAR_HTTP")?.clone();
    let secs = num(args, "--seconds", 5)?;
    let conc = num(args, "--conc", 32)?.max(1);
    until_ready(&addr).await?;
    let (ok, errs) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let t0 = Instant::now();
    let stop = t0 + Duration::from_secs(secs);
    let mut workers = Vec::new();
    for w in 0..conc {
        let (addr, ok, errs) = (addr.clone(), ok.clone(), errs.clone());
        workers.push(tokio::spawn(async move {
            let Some(mut tx) = h1(&addr).await else {
                return;
            };
            let mut k = 0u64;
            while Instant::now() < stop {
                let s = schedule(
                    &mut tx,
                    &addr,
                    &format!("rate-{w}-{k}"),
                    r#"{"dueTime":"24h"}"#.into(),
                )
                .await;
                k += 1;
                if s == 204 { &ok } else { &errs }.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let ok = ok.load(Ordering::Relaxed);
    println!(
        "{ok} {:.0} {}",
        ok as f64 / t0.elapsed().as_secs_f64(),
        errs.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn grpc_rate(args: &[String]) -> Result<(), String> {
    let addr = args.first().ok_or("grpc SCHEDULER_ADDR")?;
    let n = num(args, "--count", 100_000)?;
    let conc = num(args, "--conc", 32)?.max(1);
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let next = Arc::new(AtomicU64::new(0));
    let errs = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..conc {
        let mut c = sp::scheduler_client::SchedulerClient::new(ch.clone());
        let (next, errs) = (next.clone(), errs.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let r = c
                    .schedule_job(sp::ScheduleJobRequest {
                        name: format!("mem-{i:06}"),
                        job: Some(sp::Job {
                            due_time: Some("24h".into()),
                            ..Default::default()
                        }),
                        metadata: Some(sp::JobMetadata {
                            app_id: "jobbench".into(),
                            namespace: "default".into(),
                            target: Some(sp::JobTargetMetadata {
                                r#type: Some(sp::job_target_metadata::Type::Job(sp::TargetJob {})),
                            }),
                            concurrency_key: None,
                        }),
                        overwrite: false,
                    })
                    .await;
                if r.is_err() {
                    errs.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let errs = errs.load(Ordering::Relaxed);
    println!(
        "{} {:.0} {errs}",
        n - errs,
        (n - errs) as f64 / t0.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("late") => late(&args[1..]).await,
        Some("http") => http_rate(&args[1..]).await,
        Some("grpc") => grpc_rate(&args[1..]).await,
        _ => Err("usage: spar-jobbench late|http|grpc … (see the header of jobbench.rs)".into()),
    };
    if let Err(e) = r {
        eprintln!("spar-jobbench: {e}");
        std::process::exit(1);
    }
}
