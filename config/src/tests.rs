use std::path::Path;

use super::*;

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(d.path().join(name), text).unwrap();
    }
    d
}

fn load(files: &[(&str, &str)]) -> Result<Resources, ConfigErrors> {
    let d = dir_with(files);
    Resources::load_dirs(&[d.path().to_path_buf()])
}

const REDIS: &str = "apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: localhost:6379
  - name: redisDB
    value: 3
  - name: enableTLS
    value: false
  - name: redisPassword
    secretKeyRef:
      name: redis-secret
      key: password
auth:
  secretStore: local
scopes: [app1]
";

#[test]
fn component_values_and_secret_refs() {
    let r = load(&[("c.yaml", REDIS)]).unwrap();
    let c = &r.components[0];
    assert_eq!(c.name(), "statestore");
    assert_eq!(c.kind_prefix(), "state");
    assert_eq!(c.meta("REDISHOST").as_deref(), Some("localhost:6379"));
    assert_eq!(c.meta("redisDB").as_deref(), Some("3"));
    assert_eq!(c.meta("enableTLS").as_deref(), Some("false"));
    assert_eq!(c.meta("redisPassword"), None);
    let refs = c.secret_refs();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].0, "redisPassword");
    assert_eq!(refs[0].1.key(), "password");
    assert_eq!(c.auth.as_ref().unwrap().secret_store, "local");
    assert!(!c.metadata_map().contains_key("redisPassword"));
    assert!(c.source.ends_with("c.yaml"));
}

#[test]
fn multi_document_files_all_kinds_and_scopes() {
    let text = format!(
        "{REDIS}---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: mem
spec:
  type: state.in-memory
  version: v1
---
# an empty document is fine
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: res
spec:
  policies:
    timeouts:
      short: 1s
    retries:
      again:
        policy: exponential
        maxInterval: 10s
        maxRetries: -1
        matching:
          httpStatusCodes: 500-599,429
          gRPCStatusCodes: 1-4
    circuitBreakers:
      cb:
        maxRequests: 1
        timeout: 30s
        trip: consecutiveFailures > 5
  targets:
    apps:
      other:
        timeout: short
        retry: again
        circuitBreaker: cb
    components:
      mem:
        outbound:
          retry: again
---
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata:
  name: s1
spec:
  pubsubname: pubsub
  topic: orders
  route: /orders
  deadLetterTopic: dead
scopes: [app2]
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: s2
spec:
  pubsubname: pubsub
  topic: orders
  routes:
    rules:
    - match: event.type == \"widget\"
      path: /widgets
    default: /orders
  bulkSubscribe:
    enabled: true
    maxMessagesCount: 100
---
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata:
  name: ext
spec:
  baseUrl: https://example.test
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
"
    );
    let r = load(&[("all.yaml", &text)]).unwrap();
    assert_eq!(r.components.len(), 2);
    assert_eq!(r.resiliencies.len(), 1);
    assert_eq!(r.subscriptions.len(), 2);
    assert_eq!(r.http_endpoints.len(), 1);
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    let s1 = &r.subscriptions[0];
    assert_eq!(s1.spec.routes.default, "/orders");
    assert_eq!(s1.spec.dead_letter_topic.as_deref(), Some("dead"));
    let s2 = &r.subscriptions[1];
    assert_eq!(s2.spec.routes.rules[0].path, "/widgets");
    assert_eq!(
        s2.spec.bulk_subscribe.as_ref().unwrap().max_messages_count,
        Some(100)
    );
    let rr = &r.resiliencies[0].spec.policies.retries["again"];
    assert_eq!(rr.max_retries, Some(-1));
    assert_eq!(rr.matching.as_ref().unwrap().grpc_status_codes, "1-4");

    let app1 = r.for_app("app1");
    assert_eq!(app1.components.len(), 2);
    assert_eq!(app1.subscriptions.len(), 1);
    let app3 = r.for_app("app3");
    assert_eq!(app3.components.len(), 1);
    assert_eq!(app3.components[0].name(), "mem");
}

fn err_text(files: &[(&str, &str)]) -> String {
    load(files).unwrap_err().to_string()
}

#[test]
fn errors_name_file_resource_and_field() {
    let e = err_text(&[(
        "bad.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: broken\nspec:\n  version: v1\n",
    )]);
    assert!(
        e.contains("bad.yaml") && e.contains("Component/broken") && e.contains("spec.type"),
        "{e}"
    );

    let e = err_text(&[(
        "t.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: x\nspec:\n  type: foo.bar\n  version: one\n  metadata:\n  - name: a\n  - name: A\n    value: 1\n    secretKeyRef: {name: s}\n",
    )]);
    for want in ["spec.type", "spec.version", "spec.metadata[1].name"] {
        assert!(e.contains(want), "{want} missing in {e}");
    }

    let e = err_text(&[("n.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: bad/name\nspec:\n  type: state.x\n  version: v1\n")]);
    assert!(e.contains("metadata.name"), "{e}");

    let e = err_text(&[(
        "y.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Component\n  metadata: [\n",
    )]);
    assert!(e.contains("y.yaml") && e.contains("invalid YAML"), "{e}");

    let e = err_text(&[("ty.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: a\nspec:\n  type: state.x\n  version: v1\n  metadata: 5\n")]);
    assert!(e.contains("spec.metadata"), "{e}");
}

#[test]
fn duplicate_component_names_across_files() {
    let c = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: dup\nspec:\n  type: state.in-memory\n  version: v1\n";
    let e = err_text(&[("a.yaml", c), ("b.yaml", c)]);
    assert!(
        e.contains("b.yaml") && e.contains("a.yaml") && e.contains("duplicate"),
        "{e}"
    );
}

#[test]
fn resiliency_validation() {
    let e = err_text(&[(
        "r.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: r\nspec:\n  policies:\n    timeouts:\n      t: 5x\n    retries:\n      r:\n        policy: linear\n        maxRetries: -2\n        matching:\n          httpStatusCodes: 700\n    circuitBreakers:\n      cb:\n        trip: ''\n  targets:\n    apps:\n      a:\n        retry: nope\n",
    )]);
    for want in [
        "spec.policies.timeouts.t",
        "spec.policies.retries.r.policy",
        "spec.policies.retries.r.maxRetries",
        "spec.policies.retries.r.matching.httpStatusCodes",
        "spec.policies.circuitBreakers.cb.trip",
        "spec.targets.apps.a.retry",
    ] {
        assert!(e.contains(want), "{want} missing in {e}");
    }
}

#[test]
fn subscription_validation() {
    let e = err_text(&[(
        "s.yaml",
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: s\nspec:\n  pubsubname: p\n  routes:\n    rules:\n    - path: /x\n",
    )]);
    assert!(
        e.contains("spec.topic") && e.contains("spec.routes.rules[0].match"),
        "{e}"
    );
    let e = err_text(&[(
        "s1.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata:\n  name: s\nspec:\n  pubsubname: p\n  topic: t\n",
    )]);
    assert!(e.contains("spec.route"), "{e}");
}

#[test]
fn configuration_file() {
    let d = dir_with(&[(
        "config.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: cfg\nspec:\n  httpPipeline:\n    handlers:\n    - name: rl\n      type: middleware.http.ratelimit\n  metric:\n    enabled: true\n    http:\n      increasedCardinality: true\n      pathMatching: [\"/v1.0/state/{s}/{k}\"]\n  tracing:\n    samplingRate: \"0.5\"\n    zipkin:\n      endpointAddress: http://localhost:9411/api/v2/spans\n  secrets:\n    scopes:\n    - storeName: local\n      defaultAccess: deny\n      allowedSecrets: [a]\n  accessControl:\n    defaultAction: deny\n    trustDomain: public\n    policies:\n    - appId: app1\n      defaultAction: allow\n      operations:\n      - name: /op\n        httpVerb: [GET]\n        action: deny\n  features:\n  - name: X\n    enabled: true\n  logging:\n    apiLogging:\n      enabled: true\n      obfuscateURLs: true\n",
    )]);
    let c = load_configuration(&d.path().join("config.yaml")).unwrap();
    assert_eq!(
        c.spec.http_pipeline.as_ref().unwrap().handlers[0].type_,
        "middleware.http.ratelimit"
    );
    assert_eq!(
        c.metric()
            .unwrap()
            .http
            .as_ref()
            .unwrap()
            .path_matching
            .len(),
        1
    );
    assert_eq!(c.spec.tracing.as_ref().unwrap().sampling_rate, "0.5");
    assert_eq!(
        c.spec.secrets.as_ref().unwrap().scopes[0].default_access,
        "deny"
    );
    assert_eq!(
        c.spec.access_control.as_ref().unwrap().policies[0].operations[0].http_verb,
        ["GET"]
    );
    assert!(c.spec.features[0].enabled);
    assert!(
        c.spec
            .logging
            .as_ref()
            .unwrap()
            .api_logging
            .as_ref()
            .unwrap()
            .obfuscate_urls
    );

    let bad = dir_with(&[(
        "c.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\nspec:\n  tracing:\n    samplingRate: \"2\"\n  httpPipeline:\n    handlers:\n    - name: x\n      type: state.redis\n",
    )]);
    let e = load_configuration(&bad.path().join("c.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("spec.tracing.samplingRate") && e.contains("spec.httpPipeline.handlers[0].type"),
        "{e}"
    );
    let e = load_configuration(Path::new("/nonexistent/config.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/config.yaml"), "{e}");
}

#[test]
fn missing_directory_is_an_error() {
    let e = Resources::load_dirs(&[std::path::PathBuf::from("/nonexistent-dir")]).unwrap_err();
    assert!(e.to_string().contains("/nonexistent-dir"));
}

/// What `dapr init` writes (Go's YAML encoder: `version: v1`, empty
/// passwords, a Configuration named `daprConfig`) loads as daprd loads it.
#[test]
fn dapr_init_files_load() {
    let state = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: localhost:6379\n  - name: redisPassword\n    value: \"\"\n  - name: actorStateStore\n    value: \"true\"\n";
    let pubsub = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: localhost:6379\n  - name: redisPassword\n    value: \"\"\n";
    let r = load(&[("statestore.yaml", state), ("pubsub.yaml", pubsub)]).unwrap();
    assert_eq!(r.components.len(), 2);
    // An empty value is no value, as in Dapr.
    assert_eq!(r.components[1].meta("redisPassword"), None);
    assert_eq!(
        r.components[1].meta("actorStateStore").as_deref(),
        Some("true")
    );

    let d = dir_with(&[(
        "config.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: daprConfig\nspec:\n  tracing:\n    samplingRate: \"1\"\n    zipkin:\n      endpointAddress: http://localhost:9411/api/v2/spans\n",
    )]);
    let c = load_configuration(&d.path().join("config.yaml")).unwrap();
    assert_eq!(c.metadata.name, "daprConfig");
}

/// daprd's rules, which are looser than Kubernetes': no `spec.version`
/// means v1, templates' empty values load, `envRef` is a source, other
/// kinds and API versions are passed over with a warning.
#[test]
fn daprd_self_hosted_rules() {
    let r = load(&[(
        "docs.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: MyStore_1\nspec:\n  type: state.redis\n  metadata:\n  - name: redisHost\n    value: localhost:6379\n  - name: redisPassword # Optional\n    value:\n  - name: maxRetries\n  - name: fromEnv\n    envRef: SOME_VAR\n---\napiVersion: dapr.io/v2alpha1\nkind: Component\nmetadata:\n  name: other\nspec:\n  type: state.redis\n---\nkind: Something\n",
    )])
    .unwrap();
    assert_eq!(r.components.len(), 1);
    let c = &r.components[0];
    assert_eq!(c.name(), "MyStore_1");
    assert_eq!(c.spec.version, "");
    assert_eq!(c.meta("redisPassword"), None);
    assert_eq!(c.meta("maxRetries"), None);
    assert_eq!(c.spec.metadata[3].env_ref.as_deref(), Some("SOME_VAR"));
    assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
    assert!(
        r.warnings.iter().any(|w| w.contains("v2alpha1")),
        "{:?}",
        r.warnings
    );
}

/// Several `--config` files merge in order, with `$VAR`s expanded, and
/// need neither `apiVersion` nor `kind`.
#[test]
fn configurations_merge_in_order() {
    std::env::set_var("SPAR_CFG_TEST_RATE", "0.5");
    let d = dir_with(&[
        (
            "a.yaml",
            "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: a\nspec:\n  tracing:\n    samplingRate: \"1\"\n  metric:\n    enabled: false\n",
        ),
        ("b.yaml", "metadata:\n  name: b\nspec:\n  tracing:\n    samplingRate: \"${SPAR_CFG_TEST_RATE}\"\n"),
    ]);
    let c = load_configurations(&[d.path().join("a.yaml"), d.path().join("b.yaml")]).unwrap();
    assert_eq!(c.metadata.name, "b");
    assert_eq!(c.spec.tracing.as_ref().unwrap().sampling_rate, "0.5");
    assert_eq!(c.metric().and_then(|m| m.enabled), Some(false));
}
