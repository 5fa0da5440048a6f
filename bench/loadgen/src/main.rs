//! spar-loadgen: a small HTTP/1.1 load client for the benchmarks.
//!
//!   spar-loadgen URL --rate R --seconds S [--connections C] [--body N]
//!       open loop at R requests/s; a request that could not leave on time
//!       because its connection was still busy is measured from the moment
//!       it was *scheduled*, so a slow response also charges the requests
//!       queued behind it (no coordinated omission).
//!   spar-loadgen URL --max --seconds S [--connections C] [--body N]
//!       closed loop, as fast as C connections allow: maximum throughput.
//!
//! Prints one line: `p50_ms p90_ms p99_ms p999_ms max_ms rps errors`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

struct Args {
    url: http::Uri,
    rate: Option<f64>,
    seconds: f64,
    connections: usize,
    body: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = std::env::args().skip(1);
    let mut url = None;
    let (mut rate, mut seconds, mut connections, mut body, mut max) = (None, 5.0, 16, 0, false);
    while let Some(x) = a.next() {
        let mut val = |name: &str| a.next().ok_or(format!("{name} needs a value"));
        match x.as_str() {
            "--rate" => rate = Some(val("--rate")?.parse().map_err(|e| format!("--rate: {e}"))?),
            "--seconds" => {
                seconds = val("--seconds")?
                    .parse()
                    .map_err(|e| format!("--seconds: {e}"))?
            }
            "--connections" => {
                connections = val("--connections")?
                    .parse()
                    .map_err(|e| format!("--connections: {e}"))?
            }
            "--body" => body = val("--body")?.parse().map_err(|e| format!("--body: {e}"))?,
            "--max" => max = true,
            u if url.is_none() => url = Some(u.parse().map_err(|e| format!("url: {e}"))?),
            other => return Err(format!("unexpected argument {other}")),
        }
    }
    if rate.is_none() && !max {
        return Err("give --rate R or --max".into());
    }
    Ok(Args {
        url: url.ok_or("missing URL")?,
        rate: if max { None } else { rate },
        seconds,
        connections: connections.max(1),
        body,
    })
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(url: &http::Uri) -> Result<Sender, String> {
    let host = url.host().ok_or("no host")?;
    let port = url.port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).ok();
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(tx)
}

async fn one(tx: &mut Sender, url: &http::Uri, body: &Bytes) -> Result<(), String> {
    tx.ready().await.map_err(|e| e.to_string())?;
    let method = if body.is_empty() { "GET" } else { "POST" };
    let req = http::Request::builder()
        .method(method)
        .uri(url.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(
            "host",
            url.authority().map(|a| a.as_str()).unwrap_or("localhost"),
        )
        .body(Full::new(body.clone()))
        .map_err(|e| e.to_string())?;
    let resp = tx.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let ok = status.is_success();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    if ok {
        Ok(())
    } else {
        Err(format!("status {}", status))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("spar-loadgen: {e}");
            std::process::exit(2);
        }
    };
    let body = Bytes::from(vec![b'x'; args.body]);
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + Duration::from_secs_f64(args.seconds);
    let mut tasks = Vec::new();
    for k in 0..args.connections {
        let (url, body, rate, n) = (args.url.clone(), body.clone(), args.rate, args.connections);
        tasks.push(tokio::spawn(async move {
            let mut lat: Vec<u32> = Vec::new();
            let mut errors = 0u64;
            let Ok(mut tx) = connect(&url).await else {
                return (lat, 1);
            };
            let mut i = 0u64;
            loop {
                // Open loop: this connection owns every n-th slot of the schedule.
                let scheduled = match rate {
                    Some(r) => {
                        start + Duration::from_secs_f64((i * n as u64 + k as u64) as f64 / r)
                    }
                    None => Instant::now().max(start),
                };
                if scheduled >= end {
                    break;
                }
                // Latency counts from the scheduled time when this connection
                // is behind (the server was slow: that wait is the server's),
                // from the wake-up when it slept (timer lateness is ours).
                let from = if Instant::now() < scheduled {
                    tokio::time::sleep_until(scheduled.into()).await;
                    Instant::now()
                } else {
                    scheduled
                };
                if let Err(e) = one(&mut tx, &url, &body).await {
                    if errors == 0 {
                        eprintln!("spar-loadgen: first error on connection {k}: {e}");
                    }
                    errors += 1;
                    match connect(&url).await {
                        Ok(t) => tx = t,
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                lat.push(from.elapsed().as_micros().min(u32::MAX as u128) as u32);
                i += 1;
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    let took = Instant::now().min(end + Duration::from_secs(1)) - start;
    all.sort_unstable();
    let pct = |p: f64| {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        all[i] as f64 / 1000.0
    };
    println!(
        "{:.3} {:.3} {:.3} {:.3} {:.3} {:.0} {}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        all.last().map_or(0.0, |m| *m as f64 / 1000.0),
        all.len() as f64 / took.as_secs_f64(),
        errors
    );
}
