"""Bindings with the official Python SDK: output through
``DaprClient.invoke_binding`` over gRPC (a ``bindings.localstorage``
create / get / list / delete round trip with the binding's answer metadata,
a path escape refused with daprd's error, an unknown binding and operation
refused) and input to a gRPC app (``dapr.ext.grpc.App`` with
``@app.binding``: ``ListInputBindings``, then ``OnBindingEvent`` for each
tick of the ``bindings.cron`` component it listed)."""

from __future__ import annotations

import json
import threading
import time

import grpc
import pytest
from dapr.clients import DaprClient

from dapr.ext.grpc import App, BindingRequest

from conftest import _stop, component_yaml, free_ports, start_sidecar


@pytest.fixture(scope="module")
def bindings_sidecar(tmp_path_factory):
    work = tmp_path_factory.mktemp("bindings")
    (work / "resources").mkdir()
    (work / "resources" / "files.yaml").write_text(
        component_yaml("files", "bindings.localstorage", {"rootPath": str(work / "files")})
    )
    sc = start_sidecar(work)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DAPR_HTTP_PORT", str(sc.http_port))
            mp.setenv("DAPR_GRPC_PORT", str(sc.grpc_port))
            mp.setenv("DAPR_RUNTIME_HOST", "127.0.0.1")
            yield sc, work
    finally:
        _stop(sc.proc)


@pytest.fixture
def client(bindings_sidecar):
    sc, _ = bindings_sidecar
    with DaprClient(address=sc.grpc_address) as c:
        yield c


def test_localstorage_round_trip(client, bindings_sidecar):
    _, work = bindings_sidecar
    r = client.invoke_binding("files", "create", data="hello from python", binding_metadata={"fileName": "py.txt"})
    assert r.binding_metadata["fileName"] == "py.txt"
    assert json.loads(r.text()) == {"fileName": "py.txt"}
    assert (work / "files" / "py.txt").read_text() == "hello from python"
    assert client.invoke_binding("files", "get", binding_metadata={"fileName": "py.txt"}).text() == "hello from python"
    listed = json.loads(client.invoke_binding("files", "list").text())
    assert any(p.endswith("py.txt") for p in listed)
    client.invoke_binding("files", "delete", binding_metadata={"fileName": "py.txt"})
    assert not (work / "files" / "py.txt").exists()


def test_path_escape_is_refused(client, bindings_sidecar):
    _, work = bindings_sidecar
    with pytest.raises(grpc.RpcError) as e:
        client.invoke_binding("files", "create", data="x", binding_metadata={"fileName": "../out.txt"})
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert "error invoking output binding files" in e.value.details()
    assert not (work / "out.txt").exists()


def test_unknown_binding_and_operation(client):
    with pytest.raises(grpc.RpcError) as e:
        client.invoke_binding("nosuch", "get")
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert "couldn't find output binding nosuch" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        client.invoke_binding("files", "explode")
    assert "does not support operation explode" in e.value.details()


def test_cron_events_reach_a_grpc_app(tmp_path):
    events: list[tuple[str, dict]] = []
    # The handler is found by the event's binding name: each call is pycron's.
    app = App()

    @app.binding("pycron")
    def on_tick(request: BindingRequest) -> None:
        events.append(("pycron", dict(request.binding_metadata)))

    (port,) = free_ports(1)
    threading.Thread(target=app.run, args=(port, "127.0.0.1"), daemon=True).start()
    (tmp_path / "resources").mkdir()
    (tmp_path / "resources" / "pycron.yaml").write_text(
        component_yaml("pycron", "bindings.cron", {"schedule": "@every 1s"})
    )
    sc = start_sidecar(tmp_path, ["--app-port", str(port), "--app-protocol", "grpc"])
    try:
        deadline = time.time() + 15
        while len(events) < 2 and time.time() < deadline:
            time.sleep(0.1)
    finally:
        _stop(sc.proc)
        app.stop()
    assert len(events) >= 2
    assert all(name == "pycron" for name, _ in events)
    assert events[0][1]["timeZone"] == "UTC"
