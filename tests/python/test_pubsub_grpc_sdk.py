"""Subscriptions over gRPC with the official Python SDK: a gRPC subscriber
app (``dapr.ext.grpc.App``: ``ListTopicSubscriptions`` with a routing rule,
``OnTopicEvent``) behind its own sidecar started with ``--app-protocol
grpc``, and a streaming subscription (``DaprClient.subscribe`` →
``SubscribeTopicEventsAlpha1``) that acknowledges, retries and drops."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid

import pytest
from dapr.clients import DaprClient
from dapr.ext.grpc import App, Rule, SubscriptionMessage, TopicEventResponse

from conftest import _stop, free_ports, start_sidecar

TOPIC = f"py-grpc-{uuid.uuid4().hex[:8]}"
ROUTED: list[tuple[str, dict]] = []


def make_app() -> App:
    app = App()

    @app.subscribe(pubsub_name="pubsub", topic=TOPIC, rule=Rule('event.type == "urgent"', 1))
    def urgent(event: SubscriptionMessage) -> TopicEventResponse:
        ROUTED.append(("urgent", {"data": event.data(), "type": event.type(), "id": event.id()}))
        return TopicEventResponse("success")

    @app.subscribe(pubsub_name="pubsub", topic=TOPIC)
    def default(event: SubscriptionMessage) -> TopicEventResponse:
        ROUTED.append(
            (
                "default",
                {
                    "data": event.data(),
                    "type": event.type(),
                    "id": event.id(),
                    "pubsub_name": event.pubsub_name(),
                    "topic": event.topic(),
                    # the gRPC metadata of the OnTopicEvent call
                    "metadata": dict(event.metadata()),
                },
            )
        )
        return TopicEventResponse("success")

    return app


@pytest.fixture(scope="module")
def grpc_subscriber(tmp_path_factory):
    (port,) = free_ports(1)
    app = make_app()
    t = threading.Thread(target=app.run, args=(port, "127.0.0.1"), daemon=True)
    t.start()
    sc = start_sidecar(
        tmp_path_factory.mktemp("grpc-subscriber"),
        ["--app-port", str(port), "--app-protocol", "grpc"],
    )
    yield sc
    _stop(sc.proc)
    app.stop()


def client_for(sc, monkeypatch) -> DaprClient:
    monkeypatch.setenv("DAPR_RUNTIME_HOST", "127.0.0.1")
    monkeypatch.setenv("DAPR_HTTP_PORT", str(sc.http_port))
    monkeypatch.setenv("DAPR_GRPC_PORT", str(sc.grpc_port))
    monkeypatch.setenv("DAPR_HEALTH_TIMEOUT", "10")
    return DaprClient(sc.grpc_address)


def subscriptions(sc) -> list[dict]:
    with urllib.request.urlopen(f"{sc.http_url}/v1.0/metadata", timeout=5) as r:
        return json.load(r).get("subscriptions", [])


def test_grpc_app_gets_events_by_route(grpc_subscriber, monkeypatch):
    deadline = time.monotonic() + 10
    while not any(s["topic"] == TOPIC for s in subscriptions(grpc_subscriber)):
        assert time.monotonic() < deadline, "ListTopicSubscriptions not applied"
        time.sleep(0.1)
    with client_for(grpc_subscriber, monkeypatch) as c:
        c.publish_event(
            pubsub_name="pubsub",
            topic_name=TOPIC,
            data=json.dumps({"type": "urgent", "n": 1}),
            data_content_type="application/cloudevents+json",
        )
        c.publish_event(
            pubsub_name="pubsub",
            topic_name=TOPIC,
            data=json.dumps({"n": 2}),
            data_content_type="application/json",
            publish_metadata={"tenant": "acme"},
        )
    deadline = time.monotonic() + 10
    while len(ROUTED) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    routes = {r for r, _ in ROUTED}
    assert routes == {"urgent", "default"}, ROUTED
    default = next(e for r, e in ROUTED if r == "default")
    assert default["type"] == "com.dapr.event.sent"
    assert default["data"] == {"n": 2}
    # As daprd: `pubsub_name` in the request, and `pubsubname` plus the
    # publish metadata as gRPC metadata.
    assert default["pubsub_name"] == "pubsub"
    assert default["topic"] == TOPIC
    assert default["metadata"].get("pubsubname") == "pubsub", default["metadata"]
    assert default["metadata"].get("tenant") == "acme", default["metadata"]


def test_streaming_subscription_success_retry_drop(tmp_path, monkeypatch):
    sc = start_sidecar(tmp_path)
    topic = f"py-stream-{uuid.uuid4().hex[:8]}"
    try:
        with client_for(sc, monkeypatch) as c:
            sub = c.subscribe(pubsub_name="pubsub", topic=topic)
            try:
                assert any(
                    s["topic"] == topic and s.get("type") == "STREAMING"
                    for s in subscriptions(sc)
                ), subscriptions(sc)
                c.publish_event(pubsub_name="pubsub", topic_name=topic, data="one")
                m = sub.next_message()
                assert m is not None and m.data() == "one"
                assert m.topic() == topic and m.pubsub_name() == "pubsub"
                # RETRY: the same event comes again; SUCCESS ends it.
                sub.respond_retry(m)
                again = sub.next_message()
                assert again.id() == m.id()
                sub.respond_success(again)
                # DROP: not delivered again.
                c.publish_event(pubsub_name="pubsub", topic_name=topic, data="two")
                m2 = sub.next_message()
                assert m2.data() == "two"
                sub.respond_drop(m2)
                c.publish_event(pubsub_name="pubsub", topic_name=topic, data="three")
                m3 = sub.next_message()
                assert m3.data() == "three", "the dropped event came back"
                sub.respond_success(m3)
            finally:
                sub.close()
        # The subscription ends with the stream.
        deadline = time.monotonic() + 5
        while any(s["topic"] == topic for s in subscriptions(sc)):
            assert time.monotonic() < deadline, "streaming subscription still listed"
            time.sleep(0.05)
    finally:
        _stop(sc.proc)
