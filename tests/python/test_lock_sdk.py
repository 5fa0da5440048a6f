"""The distributed lock API with the official Python SDK (``DaprClient``
over gRPC): try_lock / unlock answers on the machine's Redis (``lock.redis``)
and on spar's SQLite lock store, the ``with`` form that unlocks itself, and
a holder process (a Python script using the SDK) killed with SIGKILL whose
lock is free once its expiry has passed, and not before."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from dapr.clients import DaprClient
from dapr.clients.grpc._response import UnlockResponseStatus

from conftest import _stop, component_yaml, start_sidecar

STORES = ["redislock", "sqlitelock"]

# The SDK warns on every call that the API is alpha.
pytestmark = pytest.mark.filterwarnings("ignore:The Distributed Lock API:UserWarning")


@pytest.fixture(scope="module")
def lock_sidecar(tmp_path_factory):
    work = tmp_path_factory.mktemp("lock")
    (work / "resources").mkdir()
    (work / "resources" / "redislock.yaml").write_text(
        component_yaml("redislock", "lock.redis", {"redisHost": "127.0.0.1:6379"})
    )
    (work / "resources" / "sqlitelock.yaml").write_text(
        component_yaml("sqlitelock", "lock.sqlite", {"connectionString": str(work / "locks.db")})
    )
    sc = start_sidecar(work)
    try:
        with pytest.MonkeyPatch.context() as mp:
            # The SDK's health check reads these when a client is made.
            mp.setenv("DAPR_HTTP_PORT", str(sc.http_port))
            mp.setenv("DAPR_GRPC_PORT", str(sc.grpc_port))
            mp.setenv("DAPR_RUNTIME_HOST", "127.0.0.1")
            yield sc
    finally:
        _stop(sc.proc)


@pytest.fixture
def client(lock_sidecar):
    with DaprClient(address=lock_sidecar.grpc_address) as c:
        yield c


@pytest.mark.parametrize("store", STORES)
def test_try_lock_and_unlock_answers(client, store):
    r = f"py-{uuid.uuid4().hex[:8]}"
    assert client.try_lock(store, r, "alice", 30).success
    assert not client.try_lock(store, r, "bob", 30)
    assert client.unlock(store, r, "bob").status == UnlockResponseStatus.lock_belongs_to_others
    assert client.unlock(store, r, "alice").status == UnlockResponseStatus.success
    assert client.unlock(store, r, "alice").status == UnlockResponseStatus.lock_does_not_exist


@pytest.mark.parametrize("store", STORES)
def test_with_statement_unlocks(client, store):
    r = f"py-{uuid.uuid4().hex[:8]}"
    with client.try_lock(store, r, "alice", 30) as held:
        assert held
        assert not client.try_lock(store, r, "bob", 30)
    assert client.try_lock(store, r, "bob", 30)
    assert client.unlock(store, r, "bob").status == UnlockResponseStatus.success


def test_unknown_store_is_refused(client):
    import grpc

    with pytest.raises(grpc.RpcError) as e:
        client.try_lock("nope", "r", "o", 5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "lock store nope not found" in e.value.details()


HOLDER = textwrap.dedent(
    """
    import sys, time
    from dapr.clients import DaprClient
    store, resource, address = sys.argv[1:4]
    with DaprClient(address=address) as c:
        assert c.try_lock(store, resource, "holder", 3).success
        print("held", flush=True)
        time.sleep(600)
    """
)


@pytest.mark.parametrize("store", STORES)
def test_holder_killed_loses_the_lock_at_expiry(client, lock_sidecar, store):
    r = f"py-{uuid.uuid4().hex[:8]}"
    before = time.monotonic()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, store, r, lock_sidecar.grpc_address],
        stdout=subprocess.PIPE,
        env=dict(os.environ),
    )
    try:
        assert holder.stdout.readline().strip() == b"held"
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        assert not client.try_lock(store, r, "other", 3), "held right after the kill"
        deadline = time.monotonic() + 20
        while not client.try_lock(store, r, "other", 30):
            assert time.monotonic() < deadline, "never freed"
            time.sleep(0.05)
        assert time.monotonic() - before >= 3, "freed before its 3 s expiry"
    finally:
        if holder.poll() is None:
            holder.kill()
