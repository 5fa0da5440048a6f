//! Resiliency (`kind: Resiliency`): timeouts, retries and circuit breakers
//! for app and component targets, compiled once at start into a lookup by
//! target, and one executor every call site shares ([`Policy::run`]).
//!
//! Per attempt: the breaker must let the call through (else it fails fast),
//! the attempt is bounded by the timeout, its outcome is classified by the
//! caller (success, retriable failure with a status code, or permanent), the
//! breaker is told, and a retriable failure is tried again after the
//! back-off while the retry policy allows.

pub mod breaker;
pub mod policy;
pub mod trip;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use breaker::{Breaker, BreakerSpec, State};
use policy::Retry;
use trip::Trip;

use crate::metrics::Metrics;

/// What a call's result means to the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// Failed with an HTTP status (100–599) or gRPC code (0–16); retried
    /// when the retry policy's matching includes it.
    Failed(Option<u32>),
    /// Failed in a way another try cannot fix (counts for the breaker).
    Permanent,
}

/// Why a call under a policy gave up without a result of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused<E> {
    Failed(E),
    Timeout(Duration),
    BreakerOpen,
}

impl std::fmt::Debug for ResiliencyMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResiliencyMetrics")
    }
}

/// The policy for one target and direction.
#[derive(Debug)]
pub struct Policy {
    /// The Resiliency resource it came from (a metric label).
    pub resource: String,
    /// `app_{id}` or `{kind}_{component}`, as daprd labels targets.
    pub target: String,
    pub direction: &'static str,
    pub timeout: Option<Duration>,
    pub retry: Option<Retry>,
    pub breaker: Option<Breaker>,
    metrics: Option<ResiliencyMetrics>,
}

#[derive(Clone)]
struct ResiliencyMetrics {
    m: Arc<Metrics>,
    app_id: String,
    namespace: String,
}

impl Policy {
    fn bump(
        &self,
        counter: impl Fn(&Metrics) -> &prometheus::CounterVec,
        policy: &str,
        status: &str,
    ) {
        if let Some(r) = &self.metrics {
            counter(&r.m)
                .with_label_values(&[
                    &r.app_id,
                    &self.resource,
                    policy,
                    &r.namespace,
                    self.direction,
                    &self.target,
                    status,
                ])
                .inc();
        }
    }

    fn activated(&self, policy: &str, status: &str) {
        self.bump(|m| &m.resiliency_activations, policy, status);
    }

    fn executed(&self, policy: &str, status: &str) {
        self.bump(|m| &m.resiliency_count, policy, status);
        if policy == "circuitbreaker" {
            self.cb_state(status);
        }
    }

    /// daprd's `cb_state` gauge: one series per state, 1 for the current.
    fn cb_state(&self, current: &str) {
        if let Some(r) = &self.metrics {
            for s in ["closed", "half-open", "open"] {
                r.m.resiliency_cb_state
                    .with_label_values(&[
                        &r.app_id,
                        &self.resource,
                        "circuitbreaker",
                        &r.namespace,
                        self.direction,
                        &self.target,
                        s,
                    ])
                    .set(i64::from(s == current));
            }
        }
    }

    fn retriable(&self, v: Verdict) -> bool {
        match (v, &self.retry) {
            (Verdict::Failed(code), Some(r)) => match code {
                Some(c) if (100..=599).contains(&c) => r.http_codes.matches(c),
                Some(c) => r.grpc_codes.matches(c),
                None => true,
            },
            _ => false,
        }
    }

    /// Runs `op` under this policy. `classify` says what each result
    /// means; when the retries are used up the last result is returned as
    /// it is (a 500 from the app reaches the caller as a 500).
    pub async fn run<T, E, F, Fut>(
        &self,
        op: F,
        classify: impl Fn(&Result<T, E>) -> Verdict,
    ) -> Result<T, Refused<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.exec(op, classify, true).await
    }

    /// Runs a call that cannot be sent twice (a stream whose body is
    /// already flowing) under the breaker and the timeout only, as daprd
    /// does for proxied gRPC streams.
    pub async fn run_once<T, E, F, Fut>(
        &self,
        op: F,
        classify: impl Fn(&Result<T, E>) -> Verdict,
    ) -> Result<T, Refused<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut op = Some(op);
        // `exec` without retries calls the operation exactly once.
        self.exec(
            move || (op.take().expect("called once without retries"))(),
            classify,
            false,
        )
        .await
    }

    async fn exec<T, E, F, Fut>(
        &self,
        mut op: F,
        classify: impl Fn(&Result<T, E>) -> Verdict,
        retries: bool,
    ) -> Result<T, Refused<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempt = 0u32;
        loop {
            let ticket = match &self.breaker {
                Some(b) => match b.before() {
                    Ok(t) => Some(t),
                    Err(_) => {
                        self.executed("circuitbreaker", State::Open.as_str());
                        return Err(Refused::BreakerOpen);
                    }
                },
                None => None,
            };
            let result = match self.timeout {
                Some(d) => match tokio::time::timeout(d, op()).await {
                    Ok(r) => Some(r),
                    Err(_) => {
                        self.activated("timeout", "");
                        None
                    }
                },
                None => Some(op().await),
            };
            let verdict = match &result {
                Some(r) => classify(r),
                None => Verdict::Failed(None),
            };
            if let (Some(b), Some(t)) = (&self.breaker, ticket) {
                if let Some(s) = b.after(t, verdict == Verdict::Success) {
                    if s == State::Open {
                        self.activated("circuitbreaker", s.as_str());
                    }
                }
                self.executed("circuitbreaker", b.state().as_str());
            }
            let again = retries
                && self.retriable(verdict)
                && self.retry.as_ref().is_some_and(|r| r.allows(attempt));
            if !again {
                return match result {
                    Some(Ok(v)) => Ok(v),
                    Some(Err(e)) => Err(Refused::Failed(e)),
                    None => Err(Refused::Timeout(self.timeout.unwrap_or_default())),
                };
            }
            self.activated("retry", "");
            let wait = self
                .retry
                .as_ref()
                .map_or(Duration::ZERO, |r| r.backoff.delay(attempt));
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// Every policy, looked up by target. Cheap to clone.
#[derive(Debug, Default, Clone)]
pub struct Resiliency {
    /// Looked up on every invocation: a fast hasher (keys are config's).
    apps: rustc_hash::FxHashMap<String, Arc<Policy>>,
    components: HashMap<String, Directions>,
}

/// A component's policies: (outbound, inbound).
type Directions = (Option<Arc<Policy>>, Option<Arc<Policy>>);

/// What the compiled policies are labelled with in metrics.
pub struct Labels {
    pub metrics: Option<Arc<Metrics>>,
    pub app_id: String,
    pub namespace: String,
}

fn parse_d(s: &str) -> Result<Duration, String> {
    spar_config::parse_duration(s)
}

impl Resiliency {
    /// Compiles the resources that apply to this app id (`scopes`).
    pub fn compile(
        resources: &[spar_config::Resiliency],
        labels: Labels,
        component_kind: impl Fn(&str) -> &'static str,
    ) -> Result<Resiliency, String> {
        let metrics = labels.metrics.as_ref().map(|m| ResiliencyMetrics {
            m: m.clone(),
            app_id: labels.app_id.clone(),
            namespace: labels.namespace.clone(),
        });
        let mut out = Resiliency::default();
        for r in resources {
            if !r.scopes.is_empty() && !r.scopes.contains(&labels.app_id) {
                continue;
            }
            let name = r.metadata.name.clone();
            let p = &r.spec.policies;
            let build = |target: String,
                         direction: &'static str,
                         e: &spar_config::EndpointPolicy|
             -> Result<Arc<Policy>, String> {
                let timeout = e
                    .timeout
                    .as_ref()
                    .map(|t| parse_d(p.timeouts.get(t).map_or(t.as_str(), String::as_str)))
                    .transpose()
                    .map_err(|err| format!("{name}: {target} timeout: {err}"))?;
                let retry = e
                    .retry
                    .as_ref()
                    .map(|n| {
                        p.retries
                            .get(n)
                            .ok_or_else(|| format!("{name}: no retry policy {n:?}"))
                            .and_then(Retry::from_spec)
                    })
                    .transpose()?;
                let breaker = e
                    .circuit_breaker
                    .as_ref()
                    .map(|n| -> Result<Breaker, String> {
                        let cb = p
                            .circuit_breakers
                            .get(n)
                            .ok_or_else(|| format!("{name}: no circuit breaker {n:?}"))?;
                        let trip = Trip::parse(if cb.trip.trim().is_empty() {
                            "consecutiveFailures > 5"
                        } else {
                            &cb.trip
                        })
                        .map_err(|err| format!("{name}: circuitBreakers.{n}.trip: {err}"))?;
                        let d = |v: &Option<String>, def: Duration| {
                            v.as_deref()
                                .map(parse_d)
                                .transpose()
                                .map(|x| x.unwrap_or(def))
                        };
                        Ok(Breaker::new(BreakerSpec {
                            max_requests: cb.max_requests.unwrap_or(1).max(1) as u64,
                            interval: d(&cb.interval, Duration::ZERO)?,
                            timeout: d(&cb.timeout, Duration::from_secs(60))?,
                            trip,
                        }))
                    })
                    .transpose()?;
                if let Some(m) = &metrics {
                    let count = [timeout.is_some(), retry.is_some(), breaker.is_some()]
                        .iter()
                        .filter(|x| **x)
                        .count();
                    m.m.resiliency_loaded
                        .with_label_values(&[&m.app_id, &name, &m.namespace])
                        .inc_by(count as f64);
                }
                Ok(Arc::new(Policy {
                    resource: name.clone(),
                    target,
                    direction,
                    timeout,
                    retry,
                    breaker,
                    metrics: metrics.clone(),
                }))
            };
            for (app, e) in &r.spec.targets.apps {
                out.apps
                    .insert(app.clone(), build(format!("app_{app}"), "outbound", e)?);
            }
            for (c, t) in &r.spec.targets.components {
                let kind = component_kind(c);
                let entry = out.components.entry(c.clone()).or_default();
                if let Some(e) = &t.outbound {
                    entry.0 = Some(build(format!("{kind}_{c}"), "outbound", e)?);
                }
                if let Some(e) = &t.inbound {
                    entry.1 = Some(build(format!("{kind}_{c}"), "inbound", e)?);
                }
            }
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.apps.is_empty() && self.components.is_empty()
    }

    /// Calls to an app (service invocation), by app id.
    pub fn app(&self, app_id: &str) -> Option<&Arc<Policy>> {
        self.apps.get(app_id)
    }

    /// Whether any app has a policy (most sidecars: none; asked per call).
    pub fn any_app(&self) -> bool {
        !self.apps.is_empty()
    }

    /// Calls to a component (state, publish).
    pub fn component_outbound(&self, name: &str) -> Option<&Arc<Policy>> {
        self.components.get(name).and_then(|c| c.0.as_ref())
    }

    /// Deliveries from a component to the app (subscriptions).
    pub fn component_inbound(&self, name: &str) -> Option<&Arc<Policy>> {
        self.components.get(name).and_then(|c| c.1.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(timeout: Option<u64>, retries: Option<u32>, codes: &str) -> Policy {
        Policy {
            resource: "r".into(),
            target: "app_x".into(),
            direction: "outbound",
            timeout: timeout.map(Duration::from_millis),
            retry: retries.map(|n| Retry {
                backoff: policy::Backoff::Constant(Duration::from_millis(1)),
                max_retries: Some(n),
                http_codes: policy::Codes::parse(codes, 100, 599).unwrap(),
                grpc_codes: Default::default(),
            }),
            breaker: None,
            metrics: None,
        }
    }

    #[tokio::test]
    async fn retries_until_success_or_exhausted() {
        let p = policy(None, Some(3), "");
        let calls = std::sync::atomic::AtomicU32::new(0);
        let r: Result<u32, Refused<()>> = p
            .run(
                || async { Ok::<u32, ()>(calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst)) },
                |r| {
                    if *r.as_ref().unwrap() < 2 {
                        Verdict::Failed(Some(500))
                    } else {
                        Verdict::Success
                    }
                },
            )
            .await;
        assert_eq!(r, Ok(2));
        // Exhausted: the last result comes back as it is.
        let r: Result<u16, Refused<()>> = p
            .run(
                || async { Ok::<u16, ()>(503) },
                |_| Verdict::Failed(Some(503)),
            )
            .await;
        assert_eq!(r, Ok(503));
        // Not matched by the policy's codes: no retry.
        let p = policy(None, Some(3), "500");
        let n = std::sync::atomic::AtomicU32::new(0);
        let _ = p
            .run(
                || async {
                    n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Ok::<u16, ()>(404)
                },
                |_| Verdict::Failed(Some(404)),
            )
            .await;
        assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn timeout_cuts_each_attempt() {
        let p = policy(Some(20), None, "");
        let r: Result<(), Refused<()>> = p
            .run(
                || async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok(())
                },
                |_| Verdict::Success,
            )
            .await;
        assert_eq!(r, Err(Refused::Timeout(Duration::from_millis(20))));
    }
}
