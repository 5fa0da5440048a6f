//! Headers the chain's filters add to a gRPC answer ([`Ctx::answer_headers`]),
//! sent as response metadata whether the call succeeds or fails.
//!
//! tonic builds the answer after the handler returns, out of the chain's
//! reach: the proxy layer opens a task-local collection around the call
//! (only when some filter may add headers) and copies what the chain left
//! into the HTTP/2 response headers.

use std::borrow::Cow;
use std::cell::RefCell;

use spar_filters::Ctx;

type Headers = Vec<(Cow<'static, str>, String)>;

tokio::task_local! {
    static ANSWER: RefCell<Headers>;
}

/// Keeps what this call's filters added, for [`collect`]'s answer.
pub(super) fn keep(ctx: &mut Ctx) {
    if ctx.answer_headers.is_empty() {
        return;
    }
    // Left in the context when no collection is open: a front end that
    // sends them itself (InvokeBinding) finds them there.
    let _ = ANSWER.try_with(|a| {
        a.borrow_mut()
            .extend(std::mem::take(&mut ctx.answer_headers))
    });
}

/// Runs `call` with a collection open, and adds what was kept to its answer.
pub(super) async fn collect<E>(
    call: impl std::future::Future<Output = Result<http::Response<tonic::body::Body>, E>>,
) -> Result<http::Response<tonic::body::Body>, E> {
    let (res, kept) = ANSWER
        .scope(RefCell::new(Vec::new()), async {
            let r = call.await;
            (r, ANSWER.with(|a| a.take()))
        })
        .await;
    let mut res = res?;
    add(res.headers_mut(), kept);
    Ok(res)
}

/// Adds filters' headers to an answer; a name or value HTTP/2 cannot carry
/// is left out (and logged).
pub(super) fn add(to: &mut http::HeaderMap, headers: Headers) {
    for (k, v) in headers {
        match (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::try_from(v),
        ) {
            (Ok(k), Ok(v)) => {
                to.append(k, v);
            }
            _ => tracing::warn!("a filter's answer header {k:?} is not valid HTTP"),
        }
    }
}
