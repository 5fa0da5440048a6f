//! `--allowed-origins`: CORS on the HTTP API as a chain filter, with
//! daprd's rules (go-chi's cors handler as daprd configures it). Empty (the
//! default): the filter is not in the chain. `*`: any origin. Otherwise a
//! comma-separated list of origins, each may hold one `*` wildcard
//! (`https://*.example.com`). Methods HEAD, GET, POST, PUT, PATCH, DELETE;
//! any request header.
//!
//! It sits before the API token check, as daprd's does: a preflight
//! (`OPTIONS` with `Access-Control-Request-Method`) is answered here and
//! never reaches auth, a handler or an app. A call from a browser (it
//! carries `Origin`) gets `Vary: Origin` and, for an allowed origin,
//! `Access-Control-Allow-Origin` on whatever answers it — the handler, an
//! error, the app it invoked — through the answer headers filters set.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{ApiResult, Ctx, Filter, Next, Request, Response};

/// Header name and value pairs added to an answer.
pub type Headers = Vec<(&'static str, String)>;

const ORIGIN: &str = "origin";
const REQUEST_METHOD: &str = "access-control-request-method";
const REQUEST_HEADERS: &str = "access-control-request-headers";

const METHODS: [&str; 6] = ["HEAD", "GET", "POST", "PUT", "PATCH", "DELETE"];

#[derive(Debug)]
pub struct Cors {
    any: bool,
    exact: Vec<String>,
    /// (prefix, suffix) around one `*`.
    wildcards: Vec<(String, String)>,
}

impl Cors {
    /// The policy for `--allowed-origins`; `None` when it is empty.
    pub fn parse(allowed: &str) -> Option<Arc<Cors>> {
        if allowed.is_empty() {
            return None;
        }
        let mut c = Cors {
            any: false,
            exact: Vec::new(),
            wildcards: Vec::new(),
        };
        for o in allowed.split(',') {
            let o = o.to_ascii_lowercase();
            if o == "*" {
                c.any = true;
            } else if let Some((pre, post)) = o.split_once('*') {
                c.wildcards.push((pre.to_string(), post.to_string()));
            } else {
                c.exact.push(o);
            }
        }
        Some(Arc::new(c))
    }

    fn allows(&self, origin: &str) -> bool {
        if self.any {
            return true;
        }
        let o = origin.to_ascii_lowercase();
        self.exact.contains(&o)
            || self.wildcards.iter().any(|(pre, post)| {
                o.len() >= pre.len() + post.len() && o.starts_with(pre) && o.ends_with(post)
            })
    }

    fn method_allowed(m: &str) -> bool {
        m.eq_ignore_ascii_case("OPTIONS") || METHODS.iter().any(|x| x.eq_ignore_ascii_case(m))
    }

    fn allow_origin(&self, origin: &str) -> (&'static str, String) {
        let v = if self.any { "*" } else { origin };
        ("access-control-allow-origin", v.to_string())
    }

    /// Whether this request is a preflight the sidecar answers.
    pub fn is_preflight(method: &str, request_method: Option<&str>) -> bool {
        method == "OPTIONS" && request_method.is_some_and(|m| !m.is_empty())
    }

    /// The headers of a preflight's answer (status 200, no body).
    pub fn preflight(
        &self,
        origin: Option<&str>,
        request_method: &str,
        request_headers: Option<&str>,
    ) -> Headers {
        let mut h: Headers = vec![
            ("vary", "Origin".into()),
            ("vary", "Access-Control-Request-Method".into()),
            ("vary", "Access-Control-Request-Headers".into()),
        ];
        let Some(origin) = origin.filter(|o| !o.is_empty()) else {
            return h;
        };
        if !self.allows(origin) || !Self::method_allowed(request_method) {
            return h;
        }
        h.push(self.allow_origin(origin));
        h.push((
            "access-control-allow-methods",
            request_method.to_ascii_uppercase(),
        ));
        let asked: Vec<&str> = request_headers
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if !asked.is_empty() {
            h.push(("access-control-allow-headers", asked.join(", ")));
        }
        h
    }

    /// The headers added to any other answer.
    pub fn actual(&self, origin: Option<&str>, method: &str) -> Headers {
        let mut h: Headers = vec![("vary", "Origin".into())];
        if let Some(o) = origin.filter(|o| !o.is_empty()) {
            if self.allows(o) && Self::method_allowed(method) {
                h.push(self.allow_origin(o));
            }
        }
        h
    }
}

#[async_trait]
impl Filter for Cors {
    fn name(&self) -> &'static str {
        "cors"
    }

    fn reads_headers(&self) -> &'static [&'static str] {
        &[ORIGIN, REQUEST_METHOD, REQUEST_HEADERS]
    }

    fn adds_headers(&self) -> bool {
        true
    }

    /// Calls without `Origin` are not a browser's: nothing to add.
    fn skips(&self, ctx: &Ctx, _req: &Request) -> bool {
        ctx.header(ORIGIN).is_none()
    }

    async fn call(&self, ctx: &mut Ctx, req: Request, next: Next<'_>) -> ApiResult {
        let origin = ctx.header(ORIGIN).map(str::to_owned);
        if Self::is_preflight(ctx.method, ctx.header(REQUEST_METHOD)) {
            let h = self.preflight(
                origin.as_deref(),
                ctx.header(REQUEST_METHOD).unwrap_or_default(),
                ctx.header(REQUEST_HEADERS),
            );
            ctx.answer_headers
                .extend(h.into_iter().map(|(k, v)| (Cow::Borrowed(k), v)));
            return Ok(Response::Bare(200));
        }
        let h = self.actual(origin.as_deref(), ctx.method);
        let res = next.run(ctx, req).await;
        ctx.answer_headers
            .extend(h.into_iter().map(|(k, v)| (Cow::Borrowed(k), v)));
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(h: &'a Headers, name: &str) -> Vec<&'a str> {
        h.iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn empty_is_off() {
        assert!(Cors::parse("").is_none());
    }

    #[test]
    fn any_origin() {
        let c = Cors::parse("*").unwrap();
        let h = c.preflight(Some("https://a.test"), "put", Some("Content-Type, X-Y"));
        assert_eq!(get(&h, "access-control-allow-origin"), ["*"]);
        assert_eq!(get(&h, "access-control-allow-methods"), ["PUT"]);
        assert_eq!(
            get(&h, "access-control-allow-headers"),
            ["Content-Type, X-Y"]
        );
        assert_eq!(get(&h, "vary").len(), 3);
        let h = c.actual(Some("https://a.test"), "GET");
        assert_eq!(get(&h, "access-control-allow-origin"), ["*"]);
    }

    #[test]
    fn listed_and_wildcard_origins() {
        let c = Cors::parse("https://app.test,https://*.example.com").unwrap();
        let ok =
            |o: &str| !get(&c.actual(Some(o), "POST"), "access-control-allow-origin").is_empty();
        assert!(ok("https://app.test"));
        assert!(ok("HTTPS://APP.TEST"));
        assert!(ok("https://x.example.com"));
        assert!(!ok("https://example.com"));
        assert!(!ok("https://evil.test"));
        let h = c.actual(Some("https://app.test"), "GET");
        assert_eq!(get(&h, "access-control-allow-origin"), ["https://app.test"]);
        // A method outside the list gets no grant.
        assert!(get(
            &c.preflight(Some("https://app.test"), "TRACE", None),
            "access-control-allow-origin"
        )
        .is_empty());
        // No origin: only Vary.
        assert_eq!(c.actual(None, "GET").len(), 1);
    }
}
