"""The transactional outbox with the official Python SDK: a state
transaction through ``DaprClient.execute_state_transaction`` (gRPC) on a
store with ``outboxPublishPubsub``/``outboxPublishTopic`` reaches a FastAPI
subscriber app (``dapr.ext.fastapi.DaprApp``) as CloudEvents carrying the
saved values; an ``outbox.projection`` operation replaces the published
value without being saved."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import uvicorn
from dapr.clients import DaprClient
from dapr.clients.grpc._request import TransactionalStateOperation
from dapr.ext.fastapi import DaprApp
from fastapi import Body, FastAPI

from conftest import _stop, component_yaml, free_ports, start_sidecar

TOPIC = f"py-outbox-{uuid.uuid4().hex[:8]}"
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
def sidecar_with_outbox(tmp_path_factory):
    (port,) = free_ports(1)
    server = uvicorn.Server(uvicorn.Config(make_app(), host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "FastAPI app did not start"
        time.sleep(0.05)
    work = tmp_path_factory.mktemp("outbox")
    (work / "resources").mkdir()
    (work / "resources" / "outboxstore.yaml").write_text(
        component_yaml(
            "outboxstore",
            "state.sqlite",
            {
                "connectionString": str(work / "outbox.db"),
                "outboxPublishPubsub": "pubsub",
                "outboxPublishTopic": TOPIC,
            },
        )
    )
    sc = start_sidecar(work, ["--app-port", str(port)])
    yield sc
    _stop(sc.proc)
    server.should_exit = True
    t.join(timeout=5)


@pytest.fixture
def client(sidecar_with_outbox, monkeypatch):
    sc = sidecar_with_outbox
    monkeypatch.setenv("DAPR_RUNTIME_HOST", "127.0.0.1")
    monkeypatch.setenv("DAPR_HTTP_PORT", str(sc.http_port))
    monkeypatch.setenv("DAPR_GRPC_PORT", str(sc.grpc_port))
    monkeypatch.setenv("DAPR_HEALTH_TIMEOUT", "10")
    with DaprClient(sc.grpc_address) as c:
        yield c


def wait_for(n: int, limit: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + limit
    while len(RECEIVED) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return list(RECEIVED)


def test_transaction_is_published_with_the_saved_values(sidecar_with_outbox, client):
    order = {"orderId": "7hf8374s", "item": "book"}
    client.execute_state_transaction(
        store_name="outboxstore",
        operations=[
            TransactionalStateOperation(
                key="order1", data=json.dumps(order), metadata={"contentType": "application/json"}
            ),
            TransactionalStateOperation(key="key1", data="2"),
            TransactionalStateOperation(key="key1", data="3", metadata={"outbox.projection": "true"}),
        ],
    )
    got = wait_for(2)
    assert len(got) == 2, got
    for e in got:
        assert e["id"].startswith("outbox-"), e
        assert e["source"] == sidecar_with_outbox.app_id
        assert e["type"] == "com.dapr.event.sent"
        assert e["topic"] == TOPIC
        assert e["pubsubname"] == "pubsub"
    assert any(e["data"] == order and e["datacontenttype"] == "application/json" for e in got), got
    assert any(e["data"] == "3" for e in got), got
    assert client.get_state("outboxstore", "key1").data == b"2", "the projection is not saved"
    assert json.loads(client.get_state("outboxstore", "order1").data) == order
