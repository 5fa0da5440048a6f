//! `bindings.cron`: an input binding firing on a schedule (`schedule`
//! metadata, see [`spar_config::schedule`]), and an output side whose `delete`
//! stops it, as daprd's. Each event has no data and daprd's metadata
//! (`timeZone`, `readTimeUTC`). A tick the app refuses is not repeated:
//! the next one comes on schedule.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::watch;

use super::{Binding, BindingError, Event, EventHandler, InvokeRequest, InvokeResponse, Reading};
use crate::build::{BuildContext, BuildError};
use crate::meta::Meta;
use spar_config::schedule::{civil_from_days, Schedule};

pub struct Cron {
    schedule: Schedule,
    /// `delete` flips it: every reading stops.
    stopped: watch::Sender<bool>,
}

pub fn build(
    c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn Binding>, BuildError> {
    let m = Meta::new(c);
    let spec = m.required("schedule")?;
    let schedule = match Schedule::parse(&spec, true).map_err(|e| m.error("schedule", e))? {
        // robfig rounds `@every` down to whole seconds, at least one.
        Schedule::Every(d) => Schedule::Every(Duration::from_secs(d.as_secs().max(1))),
        s => s,
    };
    Ok(Arc::new(Cron {
        schedule,
        stopped: watch::channel(false).0,
    }))
}

fn now_unix() -> (i64, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_nanos())
}

/// `2026-12-05 10:00:00 +0000 UTC`, as Go prints a UTC time.
fn go_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let s = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

impl Cron {
    /// How long until the next tick.
    fn wait(&self, started: tokio::time::Instant, ticks: u32) -> Option<Duration> {
        match &self.schedule {
            Schedule::Every(p) => {
                let at = started + *p * (ticks + 1);
                Some(at.saturating_duration_since(tokio::time::Instant::now()))
            }
            Schedule::Cron(f) => {
                let (now, nanos) = now_unix();
                let next = f.next_after(now)?;
                Some(Duration::from_secs((next - now) as u64) - Duration::from_nanos(nanos as u64))
            }
        }
    }
}

#[async_trait]
impl Binding for Cron {
    fn operations(&self) -> &[&'static str] {
        &[super::ops::DELETE]
    }

    async fn invoke(&self, req: InvokeRequest) -> Result<Option<InvokeResponse>, BindingError> {
        if req.operation != super::ops::DELETE {
            return Err(BindingError::Unsupported(format!(
                "invalid operation: '{}', only '{}' supported",
                req.operation,
                super::ops::DELETE
            )));
        }
        self.stopped.send_replace(true);
        Ok(Some(InvokeResponse {
            data: Vec::new(),
            metadata: [
                ("schedule".to_string(), String::new()),
                ("stopTimeUTC".to_string(), go_utc(now_unix().0)),
            ]
            .into(),
        }))
    }

    fn is_input(&self) -> bool {
        true
    }

    async fn read(&self, handler: Arc<dyn EventHandler>) -> Result<Reading, BindingError> {
        let (stop, mut stop_rx) = watch::channel(false);
        let mut deleted = self.stopped.subscribe();
        let this = Cron {
            schedule: self.schedule.clone(),
            stopped: self.stopped.clone(),
        };
        let task = tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut ticks = 0u32;
            loop {
                if *deleted.borrow() || *stop_rx.borrow() {
                    return;
                }
                let Some(wait) = this.wait(started, ticks) else {
                    tracing::warn!("cron schedule never fires again");
                    return;
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop_rx.changed() => return,
                    _ = deleted.changed() => return,
                }
                ticks = ticks.saturating_add(1);
                let ev = Event {
                    data: Vec::new(),
                    metadata: [
                        ("timeZone".to_string(), "UTC".to_string()),
                        ("readTimeUTC".to_string(), go_utc(now_unix().0)),
                    ]
                    .into(),
                };
                // One event at a time: a slow app delays the next tick
                // rather than piling calls up, and the @every ticks it
                // overran are skipped (as Go's ticker drops them), not
                // fired in a burst.
                if let Err(e) = handler.handle(ev).await {
                    tracing::debug!("cron event not taken by the app: {e}");
                }
                if let Schedule::Every(p) = &this.schedule {
                    let behind = started.elapsed().as_nanos() / p.as_nanos().max(1);
                    ticks = ticks.max(behind as u32);
                }
            }
        });
        Ok(Reading::new(stop, task))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_format() {
        assert_eq!(
            go_utc(1_796_428_800 + 3661),
            "2026-12-05 01:01:01 +0000 UTC"
        );
    }
}
