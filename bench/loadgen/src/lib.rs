//! The measurement loop shared by spar's load clients: open loop at a fixed
//! rate (latency from the scheduled send time, so a slow answer also charges
//! the requests queued behind it — no coordinated omission) or closed loop
//! flat out, over N independent connections; then percentiles.

pub mod grpc;
pub mod hop;

use std::future::Future;
use std::time::{Duration, Instant};

/// One connection's way to make a call.
pub trait Conn: Send + 'static {
    fn call(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

pub struct Load {
    /// Requests per second across all connections; `None`: flat out.
    pub rate: Option<f64>,
    pub seconds: f64,
    pub connections: usize,
}

/// `p50 p90 p99 p999 max` (ms), requests/s and errors.
pub struct Report {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub rps: f64,
    pub errors: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.3} {:.3} {:.3} {:.3} {:.3} {:.0} {}",
            self.p50, self.p90, self.p99, self.p999, self.max, self.rps, self.errors
        )
    }
}

/// Runs the load: `connect` opens one connection (again after an error).
pub async fn run<C, F, Fut>(load: &Load, connect: F) -> Report
where
    C: Conn,
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<C, String>> + Send,
{
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + Duration::from_secs_f64(load.seconds);
    let n = load.connections.max(1);
    let mut tasks = Vec::new();
    for k in 0..n {
        let (connect, rate) = (connect.clone(), load.rate);
        tasks.push(tokio::spawn(async move {
            let mut lat: Vec<u32> = Vec::new();
            let mut errors = 0u64;
            let Ok(mut c) = connect().await else {
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
                // From the scheduled time when this connection is behind (the
                // server was slow: that wait is the server's), from the
                // wake-up when it slept (timer lateness is ours).
                let from = if Instant::now() < scheduled {
                    tokio::time::sleep_until(scheduled.into()).await;
                    Instant::now()
                } else {
                    scheduled
                };
                if let Err(e) = c.call().await {
                    if errors == 0 {
                        eprintln!("first error on connection {k}: {e}");
                    }
                    errors += 1;
                    match connect().await {
                        Ok(x) => c = x,
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
    Report {
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        p999: pct(0.999),
        max: all.last().map_or(0.0, |m| *m as f64 / 1000.0),
        rps: all.len() as f64 / took.as_secs_f64(),
        errors,
    }
}

/// Common flags: `--rate R | --max`, `--seconds S`, `--connections C`.
/// Returns the load and the remaining arguments.
pub fn parse_load(args: Vec<String>) -> Result<(Load, Vec<String>), String> {
    let (mut rate, mut seconds, mut connections, mut max) = (None, 5.0, 16, false);
    let mut rest = Vec::new();
    let mut a = args.into_iter();
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
            "--max" => max = true,
            _ => rest.push(x),
        }
    }
    if rate.is_none() && !max {
        return Err("give --rate R or --max".into());
    }
    Ok((
        Load {
            rate: if max { None } else { rate },
            seconds,
            connections: connections.max(1),
        },
        rest,
    ))
}
