//! mTLS between sidecars with certificates from a real `spar sentry`, and
//! access control enforced by the callee on the caller's SPIFFE identity.

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::Value;
use spar_tests::{unique, Options, Sentry, Sidecar};

use crate::invoke::{call, echo_app};

fn mtls_sidecar(
    sentry: &Sentry,
    app_id: &str,
    app_port: Option<u16>,
    config: Option<String>,
) -> Sidecar {
    let (mut args, env) = sentry.sidecar_args();
    if let Some(p) = app_port {
        args.extend(["--app-port".to_string(), p.to_string()]);
    }
    Sidecar::start(Options {
        app_id: app_id.to_string(),
        extra_args: args,
        env,
        config,
        ..Default::default()
    })
}

fn acl_config(allowed: &str, limited: &str) -> String {
    format!(
        r#"apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: callee-acl
spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
      - appId: {allowed}
        defaultAction: allow
        trustDomain: public
        namespace: default
        operations:
          - name: /admin/**
            httpVerb: ["*"]
            action: deny
      - appId: {limited}
        defaultAction: deny
        trustDomain: public
        namespace: default
        operations:
          - name: /orders/*
            httpVerb: [GET]
            action: allow
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_invocation_with_access_control_and_rotation() {
    // Short-lived certificates: renewed at 70% of 6 s while the test runs.
    let sentry = Sentry::start(Some(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: daprsystem\nspec:\n  mtls:\n    enabled: true\n    workloadCertTTL: 6s\n    allowedClockSkew: 1m\n",
    ));
    let (port, _app) = echo_app("secure").await;
    let callee_id = unique("mtls-callee");
    let (allowed_id, limited_id, stranger_id) =
        (unique("allowed"), unique("limited"), unique("stranger"));
    let callee = mtls_sidecar(
        &sentry,
        &callee_id,
        Some(port),
        Some(acl_config(&allowed_id, &limited_id)),
    );
    let allowed = mtls_sidecar(&sentry, &allowed_id, None, None);
    let limited = mtls_sidecar(&sentry, &limited_id, None, None);
    let stranger = mtls_sidecar(&sentry, &stranger_id, None, None);
    let c = Client::new();
    let url =
        |s: &Sidecar, path: &str| format!("{}/v1.0/invoke/{callee_id}/method/{path}", s.http());

    // Invocation works over mTLS.
    let r = call(&c, c.post(url(&allowed, "orders/1")).body("x")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["app"], "secure");
    // The HTTP calls' kept-alive connection(s) to the callee, opened with
    // the first certificate.
    let internal: u16 = callee.ready_field("internal").unwrap().parse().unwrap();
    let first_cert_conns = allowed.connections_to(internal);
    assert!(!first_cert_conns.is_empty(), "no pooled connection");

    // One method: allowed for one app id (GET), denied for another, and for
    // a verb the policy does not allow.
    let r = call(&c, c.get(url(&limited, "orders/7"))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = c.post(url(&limited, "orders/7")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c.get(url(&allowed, "admin/users")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errorCode"], "ERR_DIRECT_INVOKE");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("access control policy has denied access"),
        "{msg}"
    );
    assert!(msg.contains(&allowed_id), "{msg}");
    // No policy for this app id: the global default (deny).
    let r = call(&c, c.get(url(&stranger, "orders/7"))).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // gRPC InvokeService (Rust SDK) over the same mTLS path.
    let mut sdk =
        dapr::Client::from_options(dapr::client::ClientOptions::new().with_address(allowed.grpc()))
            .await
            .unwrap();
    let r = sdk
        .invoke_service(
            callee_id.as_str(),
            "orders/2",
            Some(prost_types::Any {
                type_url: String::new(),
                value: b"hey".to_vec(),
            }),
        )
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&r.data.unwrap().value).unwrap();
    assert_eq!(v["path"], "/orders/2");

    // Certificates rotate before expiry (at 70% of their lifetime, ~4 s,
    // and only then) and calls keep working.
    assert!(
        !callee.stderr().contains("certificate renewed"),
        "renewed too early"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(callee.stderr().contains("certificate renewed")
        && allowed.stderr().contains("certificate renewed"))
    {
        assert!(Instant::now() < deadline, "no renewal: {}", callee.stderr());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Past the first certificates' expiry: only renewed ones can work.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let renewals = callee.stderr().matches("certificate renewed").count();
    assert!(renewals <= 3, "renewing in a loop: {renewals}");
    let fresh = Client::new();
    let r = fresh
        .post(url(&allowed, "orders/3"))
        .body("y")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Connections opened with a replaced certificate are retired, not
    // reused: the call went over a new one.
    let now = allowed.connections_to(internal);
    assert!(
        now.iter().all(|p| !first_cert_conns.contains(p)) && !now.is_empty(),
        "first-certificate connections {first_cert_conns:?}, now {now:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_another_ca_are_refused() {
    let sentry = Sentry::start(None);
    let other = Sentry::start(None);
    let (port, _app) = echo_app("guarded").await;
    let callee_id = unique("guarded");
    let callee = mtls_sidecar(&sentry, &callee_id, Some(port), None);
    let friend = mtls_sidecar(&sentry, &unique("friend"), None, None);
    let c = Client::new();
    let r = call(
        &c,
        c.get(format!(
            "{}/v1.0/invoke/{callee_id}/method/ping",
            friend.http()
        )),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);

    // The intruder trusts both CAs (so it accepts the callee's certificate)
    // but holds a certificate from the other one: the callee refuses it.
    let both = other.dir.path().join("both.pem");
    std::fs::write(
        &both,
        format!("{}{}", sentry.trust_anchors(), other.trust_anchors()),
    )
    .unwrap();
    let intruder = Sidecar::start(Options {
        app_id: unique("intruder"),
        extra_args: vec![
            "--enable-mtls".into(),
            "--sentry-address".into(),
            other.address(),
            "--trust-anchors-file".into(),
            both.display().to_string(),
        ],
        ..Default::default()
    });
    let _ = &callee;
    let r = c
        .get(format!(
            "{}/v1.0/invoke/{callee_id}/method/ping",
            intruder.http()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errorCode"], "ERR_DIRECT_INVOKE", "{v}");
    // Refused by the callee's client-certificate check, not by the intruder.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !callee.stderr().contains("invalid peer certificate") {
        assert!(Instant::now() < deadline, "{}", callee.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A sidecar without mTLS cannot reach it either.
    let plain = Sidecar::start(Options {
        app_id: unique("plain"),
        ..Default::default()
    });
    let r = c
        .get(format!(
            "{}/v1.0/invoke/{callee_id}/method/ping",
            plain.http()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
}
