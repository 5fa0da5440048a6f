"""Publish and subscribe with the official Python SDK on both ends: a
FastAPI subscriber app (the SDK's ``dapr.ext.fastapi.DaprApp``: programmatic
subscriptions on ``GET /dapr/subscribe``) behind its own sidecar, and
``DaprClient.publish_event`` over gRPC to that sidecar."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid

import pytest
import uvicorn
from dapr.clients import DaprClient
from dapr.ext.fastapi import DaprApp
from fastapi import Body, FastAPI

from conftest import _stop, free_ports, start_sidecar

TOPIC = f"py-orders-{uuid.uuid4().hex[:8]}"
RECEIVED: list[dict] = []


def make_app() -> FastAPI:
    app = FastAPI()
    dapr_app = DaprApp(app)

    @dapr_app.subscribe(pubsub="pubsub", topic=TOPIC)
    def orders(event: dict = Body(...)):
        RECEIVED.append(event)
        return {"status": "SUCCESS"}

    return app


@pytest.fixture(scope="module")
def subscriber(tmp_path_factory):
    (port,) = free_ports(1)
    server = uvicorn.Server(uvicorn.Config(make_app(), host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "FastAPI app did not start"
        time.sleep(0.05)
    sc = start_sidecar(tmp_path_factory.mktemp("subscriber"), ["--app-port", str(port)])
    yield sc
    _stop(sc.proc)
    server.should_exit = True
    t.join(timeout=5)


def wait_for(n: int, limit: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + limit
    while len(RECEIVED) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return list(RECEIVED)


@pytest.fixture
def client(subscriber, monkeypatch):
    """A DaprClient for the subscriber's sidecar (the SDK's health check
    reads DAPR_HTTP_PORT)."""
    monkeypatch.setenv("DAPR_RUNTIME_HOST", "127.0.0.1")
    monkeypatch.setenv("DAPR_HTTP_PORT", str(subscriber.http_port))
    monkeypatch.setenv("DAPR_GRPC_PORT", str(subscriber.grpc_port))
    monkeypatch.setenv("DAPR_HEALTH_TIMEOUT", "10")
    with DaprClient(subscriber.grpc_address) as c:
        yield c


def subscribed(sc, topic: str) -> bool:
    with urllib.request.urlopen(f"{sc.http_url}/v1.0/metadata", timeout=5) as r:
        meta = json.load(r)
    return any(s["topic"] == topic for s in meta.get("subscriptions", []))


def test_python_publisher_reaches_python_subscriber(subscriber, client):
    # The subscription starts once the app answered /dapr/subscribe.
    deadline = time.monotonic() + 10
    while not subscribed(subscriber, TOPIC):
        assert time.monotonic() < deadline, "subscription not active"
        time.sleep(0.1)
    client.publish_event(
        pubsub_name="pubsub",
        topic_name=TOPIC,
        data=json.dumps({"id": 1, "item": "book"}),
        data_content_type="application/json",
    )
    client.publish_event(pubsub_name="pubsub", topic_name=TOPIC, data="plain text")
    got = wait_for(2)
    assert len(got) == 2, got
    first = next(e for e in got if isinstance(e.get("data"), dict))
    assert first["data"] == {"id": 1, "item": "book"}
    assert first["type"] == "com.dapr.event.sent"
    assert first["source"] == subscriber.app_id
    assert first["topic"] == TOPIC
    assert first["pubsubname"] == "pubsub"
    assert first["datacontenttype"] == "application/json"
    assert first["specversion"] == "1.0"
    text = next(e for e in got if not isinstance(e.get("data"), dict))
    assert text["data"] == "plain text"


def test_publish_errors_come_back_as_grpc_errors(client):
    with pytest.raises(Exception) as e:
        client.publish_event(pubsub_name="nope", topic_name="t", data="x")
    assert "not found" in str(e.value)
