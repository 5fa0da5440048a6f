"""Service invocation through the official Dapr Python SDK: the session's
sidecar calls a second sidecar (found by mDNS) in front of a small HTTP app."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import _stop, free_ports, start_sidecar


class Echo(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        out = json.dumps(
            {"method": self.command, "path": self.path, "body": body.decode(), "ct": self.headers.get("content-type")}
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture(scope="module")
def callee(tmp_path_factory):
    (port,) = free_ports(1)
    server = ThreadingHTTPServer(("127.0.0.1", port), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sc = start_sidecar(tmp_path_factory.mktemp("callee"), ["--app-port", str(port)])
    yield sc
    _stop(sc.proc)
    server.shutdown()


def test_invoke_method_reaches_the_other_app(sidecar, dapr_client, callee):
    deadline = time.monotonic() + 15
    while True:
        try:
            resp = dapr_client.invoke_method(
                callee.app_id,
                "orders/7",
                data='{"qty": 2}',
                content_type="application/json",
                http_verb="POST",
            )
            break
        except Exception:  # mDNS may not have seen the callee yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    got = json.loads(resp.text())
    assert got["method"] == "POST"
    assert got["path"] == "/orders/7"
    assert got["body"] == '{"qty": 2}'
    assert got["ct"] == "application/json"

    resp = dapr_client.invoke_method(callee.app_id, "health", http_verb="GET")
    assert json.loads(resp.text())["method"] == "GET"
