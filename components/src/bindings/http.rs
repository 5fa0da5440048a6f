//! `bindings.http`: an output binding calling one HTTP endpoint (`url`),
//! as daprd's. Operations are the verbs (`create` is `post`); per call,
//! `path` metadata is appended to the URL and every metadata key starting
//! with a capital letter is sent as a request header (and `traceparent` /
//! `tracestate`). The answer's
//! metadata: `statusCode`, `status` (`200 OK`) and the response headers
//! (several values joined by `, `). A non-2xx answer is an error carrying
//! that metadata unless `errorIfNot2XX: false`. TLS: `MTLSRootCA` (a PEM or
//! a path to one) adds a trusted root; `MTLSClientCert` + `MTLSClientKey`
//! authenticate the client. `securityToken` goes in `securityTokenHeader`.
//! `responseTimeout` bounds each call.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Binding, BindingError, InvokeRequest, InvokeResponse};
use crate::build::{BuildContext, BuildError};
use crate::meta::Meta;

const OPERATIONS: &[&str] = &[
    "create", "get", "head", "post", "put", "patch", "delete", "options", "trace",
];

pub struct HttpBinding {
    url: String,
    client: reqwest::Client,
    error_if_not_2xx: bool,
    token: Option<(String, String)>,
}

/// A PEM given inline or as a path to a file.
fn pem(m: &Meta, field: &str) -> Result<Option<Vec<u8>>, BuildError> {
    let Some(v) = m.str(field) else {
        return Ok(None);
    };
    if v.contains("-----BEGIN") {
        return Ok(Some(v.into_bytes()));
    }
    std::fs::read(&v).map(Some).map_err(|e| {
        m.error(
            field,
            format!("neither a PEM nor a readable file ({v}): {e}"),
        )
    })
}

pub fn build(
    c: &spar_config::Component,
    _ctx: &BuildContext,
) -> Result<Arc<dyn Binding>, BuildError> {
    let m = Meta::new(c);
    let url = m.required("url")?;
    reqwest::Url::parse(&url).map_err(|e| m.error("url", e.to_string()))?;
    let mut b = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
    if let Some(t) = m.duration_opt("responseTimeout")? {
        b = b.timeout(t);
    }
    if let Some(ca) = pem(&m, "MTLSRootCA")? {
        let certs = reqwest::Certificate::from_pem_bundle(&ca)
            .map_err(|e| m.error("MTLSRootCA", e.to_string()))?;
        for cert in certs {
            b = b.add_root_certificate(cert);
        }
    }
    match (pem(&m, "MTLSClientCert")?, pem(&m, "MTLSClientKey")?) {
        (Some(mut cert), Some(key)) => {
            cert.push(b'\n');
            cert.extend_from_slice(&key);
            let id = reqwest::Identity::from_pem(&cert)
                .map_err(|e| m.error("MTLSClientCert", e.to_string()))?;
            b = b.identity(id);
        }
        (None, None) => {}
        _ => {
            return Err(m.error(
                "MTLSClientCert",
                "MTLSClientCert and MTLSClientKey go together",
            ))
        }
    }
    let client = b
        .build()
        .map_err(|e| m.error("url", format!("HTTP client: {e}")))?;
    let token = match m.str("securityToken") {
        Some(t) => {
            let header = m
                .str("securityTokenHeader")
                .ok_or_else(|| m.error("securityTokenHeader", "is required with securityToken"))?;
            Some((header, t))
        }
        None => None,
    };
    Ok(Arc::new(HttpBinding {
        url,
        client,
        error_if_not_2xx: m.bool("errorIfNot2XX", true)?,
        token,
    }))
}

/// `url` with a per-call `path` appended, one slash between.
fn join(url: &str, path: Option<&String>) -> String {
    match path.filter(|p| !p.is_empty()) {
        Some(p) => format!(
            "{}/{}",
            url.trim_end_matches('/'),
            p.trim_start_matches('/')
        ),
        None => url.to_string(),
    }
}

#[async_trait]
impl Binding for HttpBinding {
    fn operations(&self) -> &[&'static str] {
        OPERATIONS
    }

    async fn invoke(&self, req: InvokeRequest) -> Result<Option<InvokeResponse>, BindingError> {
        let method = match req.operation.as_str() {
            "create" | "post" => reqwest::Method::POST,
            "get" => reqwest::Method::GET,
            "head" => reqwest::Method::HEAD,
            "put" => reqwest::Method::PUT,
            "patch" => reqwest::Method::PATCH,
            "delete" => reqwest::Method::DELETE,
            "options" => reqwest::Method::OPTIONS,
            "trace" => reqwest::Method::TRACE,
            op => {
                return Err(BindingError::Unsupported(format!(
                    "invalid operation: {op}"
                )))
            }
        };
        let url = join(&self.url, req.metadata.get("path"));
        let mut call = self.client.request(method.clone(), &url);
        for (k, v) in &req.metadata {
            // Capitalised keys are headers; the trace context always goes.
            let trace = matches!(k.as_str(), "traceparent" | "tracestate");
            if trace || k.chars().next().is_some_and(char::is_uppercase) {
                call = call.header(k.as_str(), v.as_str());
            }
        }
        if let Some((h, t)) = &self.token {
            call = call.header(h.as_str(), t.as_str());
        }
        if !req.data.is_empty() && !matches!(method, reqwest::Method::GET | reqwest::Method::HEAD) {
            call = call.body(req.data);
        }
        let resp = call
            .send()
            .await
            .map_err(|e| BindingError::Backend(format!("error invoking {url}: {e}")))?;
        let status = resp.status();
        let mut metadata: HashMap<String, String> = HashMap::new();
        for (k, v) in resp.headers() {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            // Go canonicalises header names (Content-Type).
            let k = canonical(k.as_str());
            metadata
                .entry(k)
                .and_modify(|e| {
                    e.push_str(", ");
                    e.push_str(&v);
                })
                .or_insert(v);
        }
        metadata.insert("statusCode".into(), status.as_u16().to_string());
        metadata.insert(
            "status".into(),
            format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or_default()
            )
            .trim_end()
            .to_string(),
        );
        let data = resp
            .bytes()
            .await
            .map_err(|e| BindingError::Backend(format!("reading the answer from {url}: {e}")))?
            .to_vec();
        if self.error_if_not_2xx && !status.is_success() {
            return Err(BindingError::WithMetadata {
                message: format!("received status code {}", status.as_u16()),
                metadata,
            });
        }
        Ok(Some(InvokeResponse { data, metadata }))
    }
}

/// `content-type` → `Content-Type`.
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_names() {
        assert_eq!(
            join("http://h/a/", Some(&"/b?c=1".into())),
            "http://h/a/b?c=1"
        );
        assert_eq!(join("http://h/a", None), "http://h/a");
        assert_eq!(canonical("content-type"), "Content-Type");
        assert_eq!(canonical("x-request-id"), "X-Request-Id");
    }
}
