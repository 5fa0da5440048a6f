//! Delivery of configuration changes to the app for subscriptions made
//! over HTTP, as daprd: for each changed key, a `POST
//! /configuration/{store}/{key}` with the whole update (`{"id", "items"}`)
//! as JSON; any answer but 200 is logged as a failure (and retried under
//! the store's `inbound` resiliency policy, when there is one).
//!
//! One task per subscription takes the feed's changes one batch at a
//! time: while the app is slow, further changes wait in the feed, the
//! latest per key, so nothing grows without bound. The task ends when the
//! subscription is removed (unsubscribe, shutdown).

use std::sync::Arc;
use std::time::Duration;

use spar_filters::handlers::configuration::Subscribed;
use spar_filters::resiliency::{Refused, Verdict};
use spar_filters::Runtime;

/// The longest one POST to the app may take.
const APP_TIMEOUT: Duration = Duration::from_secs(30);

pub fn spawn(rt: Arc<Runtime>, s: &Subscribed) {
    let Some(addr) = rt.app_addr() else {
        return;
    };
    let (id, store, feed) = (s.id.clone(), s.store.clone(), s.feed.clone());
    tokio::spawn(async move {
        let client = match reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(APP_TIMEOUT)
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("configuration delivery: no HTTP client: {e}");
                return;
            }
        };
        while let Some(items) = feed.next().await {
            let event = serde_json::json!({
                "id": id,
                "items": crate::http::encode::configuration_items(&items),
            });
            let body = bytes::Bytes::from(serde_json::to_vec(&event).unwrap_or_default());
            for key in items.keys() {
                let url = format!("http://{addr}/configuration/{store}/{key}");
                let send = || post(&client, &rt, &url, body.clone());
                let policy = rt.live().resiliency.component_inbound(&store).cloned();
                let r = match policy {
                    None => send().await,
                    Some(p) => p
                        .run(send, |r| match r {
                            Ok(()) => Verdict::Success,
                            Err(_) => Verdict::Failed(None),
                        })
                        .await
                        .map_err(|e| match e {
                            Refused::Failed(e) => e,
                            Refused::Timeout(d) => {
                                format!("timeout after {d:?} (resiliency policy)")
                            }
                            Refused::BreakerOpen => "circuit breaker is open".into(),
                        }),
                };
                if let Err(e) = r {
                    tracing::error!(store = %store, key = %key, "error sending configuration item to the app: {e}");
                }
            }
        }
    });
}

async fn post(
    client: &reqwest::Client,
    rt: &Runtime,
    url: &str,
    body: bytes::Bytes,
) -> Result<(), String> {
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = &rt.app_token {
        req = req.header("dapr-api-token", t);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    match resp.status().as_u16() {
        200 => Ok(()),
        s => Err(format!(
            "error sending configuration item to application, status {s}"
        )),
    }
}
