"""Service invocation of a gRPC app written with the official Python SDK
(``dapr.ext.grpc.App``, ``@app.method``; shipped in ``dapr`` 1.19.0 with
its ``grpc`` extra), run as the app of a real ``spar run --app-protocol
grpc``. The session's sidecar invokes it with ``DaprClient().invoke_method``
over gRPC (``InvokeService``) and over HTTP
(``DAPR_API_METHOD_INVOCATION_PROTOCOL=http``); the call reaches the app as
``AppCallback/OnInvoke``."""

from __future__ import annotations

import json
import threading
import time

import grpc
import pytest

from conftest import _stop, free_ports, start_sidecar

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


def _grpc_app(port: int):
    from dapr.ext.grpc import App, InvokeMethodRequest, InvokeMethodResponse

    app = App()

    @app.method("echo")
    def echo(request: InvokeMethodRequest) -> InvokeMethodResponse:
        md = {k: v for k, v in request.metadata.items()}
        out = {
            "text": request.text(),
            "content_type": request.content_type,
            "x-order": md.get("x-order", [None])[0],
            "traceparent": md.get("traceparent", [None])[0],
        }
        return InvokeMethodResponse(json.dumps(out).encode(), "application/json")

    @app.method("plain")
    def plain(request: InvokeMethodRequest) -> str:
        return "pong:" + request.text()

    threading.Thread(target=app.run, args=(port,), daemon=True).start()
    return app


@pytest.fixture(scope="module")
def grpc_callee(tmp_path_factory):
    (port,) = free_ports(1)
    app = _grpc_app(port)
    sc = start_sidecar(
        tmp_path_factory.mktemp("grpc-callee"),
        ["--app-port", str(port), "--app-protocol", "grpc"],
    )
    yield sc
    _stop(sc.proc)
    app.stop()


def _invoke(client, app_id: str, method: str, **kw):
    deadline = time.monotonic() + 15
    while True:
        try:
            return client.invoke_method(app_id, method, **kw)
        except Exception as e:  # mDNS may not have seen the callee yet
            if "not implemented" in str(e).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _check(client, app_id: str) -> None:
    resp = _invoke(
        client,
        app_id,
        "echo",
        data='{"qty": 2}',
        content_type="application/json",
        metadata=(("x-order", "7"), ("traceparent", TRACEPARENT)),
        http_verb="POST",
    )
    got = json.loads(resp.text())
    assert got["text"] == '{"qty": 2}'
    assert got["content_type"] == "application/json"
    assert got["x-order"] == "7"
    assert got["traceparent"].startswith(f"00-{TRACE}-"), got
    assert resp.content_type.startswith("application/json")

    resp = _invoke(client, app_id, "plain", data="ping", http_verb="GET")
    assert resp.text() == "pong:ping"


def test_grpc_app_invoked_over_grpc(sidecar, grpc_callee, monkeypatch):
    from dapr.clients import DaprClient

    monkeypatch.setenv("DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")
    with DaprClient(address=sidecar.grpc_address) as client:
        _check(client, grpc_callee.app_id)
        # A method the app does not have: its UNIMPLEMENTED as it gave it.
        with pytest.raises(grpc.RpcError) as e:
            client.invoke_method(grpc_callee.app_id, "missing", data="x")
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_grpc_app_invoked_over_http(sidecar, grpc_callee, monkeypatch):
    from dapr.clients import DaprClient
    from dapr.clients.exceptions import DaprHttpError

    monkeypatch.setenv("DAPR_API_METHOD_INVOCATION_PROTOCOL", "http")
    with DaprClient(address=sidecar.grpc_address) as client:
        _check(client, grpc_callee.app_id)
        # UNIMPLEMENTED becomes daprd's 501.
        with pytest.raises(DaprHttpError) as e:
            client.invoke_method(grpc_callee.app_id, "missing", data="x", http_verb="POST")
        assert e.value.status_code == 501
