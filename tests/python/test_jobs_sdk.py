"""The Jobs API with the official Python SDK (``dapr`` 1.19.0): a real
``spar scheduler`` node, a gRPC app written with ``dapr.ext.grpc.App``
(``@app.job_event``, delivered as ``AppCallback/OnJobEvent``) behind a
real ``spar run --app-protocol grpc --scheduler-host-address``, and
``DaprClient`` ``schedule_job`` / ``get_job`` / ``delete_job``."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
from google.protobuf.any_pb2 import Any as GrpcAny

from conftest import _stop, free_ports, spar_bin, start_sidecar


def _wait_port(port: int, limit: float = 15.0) -> None:
    import socket

    deadline = time.time() + limit
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture(scope="module")
def jobs_env(tmp_path_factory):
    from dapr.ext.grpc import App

    work = tmp_path_factory.mktemp("jobs")
    sched_port, app_port = free_ports(2)
    log = open(work / "scheduler.log", "wb")
    scheduler = subprocess.Popen(
        [str(spar_bin()), "scheduler", "--port", str(sched_port), "--listen-address",
         "127.0.0.1", "--data-dir", str(work / "scheduler")],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    _wait_port(sched_port)

    seen: dict[str, list[bytes]] = {}
    lock = threading.Lock()
    app = App()

    def record(event):
        with lock:
            seen.setdefault(event.name, []).append(event.data)

    for name in ("py-tick", "py-once"):
        app.job_event(name)(record)
    threading.Thread(target=app.run, args=(app_port,), daemon=True).start()
    _wait_port(app_port)

    sc = start_sidecar(
        work / "sidecar",
        ["--app-port", str(app_port), "--app-protocol", "grpc",
         "--scheduler-host-address", f"127.0.0.1:{sched_port}"],
    )

    def count(name: str) -> int:
        with lock:
            return len(seen.get(name, []))

    def data(name: str) -> list[bytes]:
        with lock:
            return list(seen.get(name, []))

    yield sc, count, data
    _stop(sc.proc)
    app.stop()
    scheduler.kill()
    scheduler.wait()
    log.close()


@pytest.fixture
def client(jobs_env, monkeypatch):
    from dapr.clients import DaprClient

    sc = jobs_env[0]
    # The SDK's health check polls $DAPR_HTTP_PORT: this module's sidecar.
    for var in ("DAPR_HTTP_ENDPOINT", "DAPR_GRPC_ENDPOINT", "DAPR_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DAPR_RUNTIME_HOST", "127.0.0.1")
    monkeypatch.setenv("DAPR_HTTP_PORT", str(sc.http_port))
    monkeypatch.setenv("DAPR_GRPC_PORT", str(sc.grpc_port))
    monkeypatch.setenv("DAPR_HEALTH_TIMEOUT", "10")
    monkeypatch.setenv("DAPR_API_TIMEOUT_SECONDS", "20")
    with DaprClient(address=sc.grpc_address) as c:
        yield c


def _until(cond, limit: float) -> bool:
    deadline = time.time() + limit
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_every_second_reaches_the_grpc_app(jobs_env, client):
    from dapr.clients import Job

    _, count, data = jobs_env
    client.schedule_job(Job(name="py-tick", schedule="@every 1s", data=GrpcAny(value=b"hello")))
    got = client.get_job("py-tick")
    assert got.schedule == "@every 1s"
    assert _until(lambda: count("py-tick") >= 3, 8.0), count("py-tick")
    assert data("py-tick")[0] == b"hello"
    client.delete_job("py-tick")
    time.sleep(0.5)
    n = count("py-tick")
    time.sleep(2.5)
    assert count("py-tick") == n, "a deleted job fired"


def test_one_shot_fires_once(jobs_env, client):
    from dapr.clients import Job

    _, count, _ = jobs_env
    client.schedule_job(Job(name="py-once", due_time="1s"))
    assert _until(lambda: count("py-once") == 1, 6.0)
    time.sleep(2.0)
    assert count("py-once") == 1
    with pytest.raises(Exception):
        client.get_job("py-once")


def test_bad_schedule_and_existing_name(jobs_env, client):
    from dapr.clients import Job
    from dapr.clients.exceptions import DaprGrpcError

    with pytest.raises(DaprGrpcError) as e:
        client.schedule_job(Job(name="py-bad", schedule="every now and then"))
    assert e.value.code().name == "INVALID_ARGUMENT"
    client.schedule_job(Job(name="py-dup", due_time="1h"))
    with pytest.raises(DaprGrpcError) as e:
        client.schedule_job(Job(name="py-dup", due_time="1h"))
    assert e.value.code().name == "ALREADY_EXISTS"
    client.schedule_job(Job(name="py-dup", due_time="2h"), overwrite=True)
    assert client.get_job("py-dup").due_time == "2h"
    client.delete_job("py-dup")
