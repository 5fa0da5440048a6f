"""The configuration API through the official Dapr Python SDK (gRPC):
``get_configuration``, ``subscribe_configuration`` (the SDK's watcher
thread reads the stream) and ``unsubscribe_configuration``, against a
``configuration.sqlite`` store edited as ``sqlite3`` would (Python's own
sqlite3 module, another connection) and a ``configuration.redis`` store
edited with ``redis-cli``."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
import time
import uuid

import pytest
from dapr.clients import DaprClient

from conftest import _stop, component_yaml, start_sidecar

ARRIVAL_S = 10.0


@pytest.fixture(scope="module")
def config_sidecar(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("configuration")
    resources = workdir / "resources"
    resources.mkdir(parents=True, exist_ok=True)
    db = workdir / "config.db"
    (resources / "configstore.yaml").write_text(
        component_yaml("configstore", "configuration.sqlite", {"connectionString": str(db)})
    )
    (resources / "redisconfig.yaml").write_text(
        component_yaml("redisconfig", "configuration.redis", {"redisHost": "127.0.0.1:6379"})
    )
    sc = start_sidecar(workdir)
    sc.config_db = db
    with pytest.MonkeyPatch.context() as mp:
        # The SDK's health check and defaults read these.
        for var in ("DAPR_HTTP_ENDPOINT", "DAPR_GRPC_ENDPOINT", "DAPR_API_TOKEN"):
            mp.delenv(var, raising=False)
        mp.setenv("DAPR_RUNTIME_HOST", "127.0.0.1")
        mp.setenv("DAPR_HTTP_PORT", str(sc.http_port))
        mp.setenv("DAPR_GRPC_PORT", str(sc.grpc_port))
        mp.setenv("DAPR_HEALTH_TIMEOUT", "10")
        mp.setenv("DAPR_API_TIMEOUT_SECONDS", "20")
        try:
            yield sc
        finally:
            _stop(sc.proc)


@pytest.fixture
def client(config_sidecar):
    with DaprClient(address=config_sidecar.grpc_address) as c:
        yield c


def sqlite_set(db, key: str, value: str, version: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO configuration (key, value, version) VALUES (?, ?, ?)",
            (key, value, version),
        )


def redis_set(key: str, value: str, version: str) -> None:
    subprocess.run(["redis-cli", "SET", key, f"{value}||{version}"], check=True, capture_output=True)


def redis_del(key: str) -> None:
    subprocess.run(["redis-cli", "DEL", key], check=True, capture_output=True)


class Seen:
    """What a subscription handler received, waited on."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict]] = []
        self.cond = threading.Condition()

    def handler(self, id_: str, resp) -> None:
        with self.cond:
            self.items.append((id_, {k: (v.value, v.version) for k, v in resp.items.items()}))
            self.cond.notify_all()

    def wait_for(self, key: str, value: str) -> str:
        deadline = time.monotonic() + ARRIVAL_S
        with self.cond:
            while True:
                for id_, items in self.items:
                    if items.get(key, (None,))[0] == value:
                        return id_
                left = deadline - time.monotonic()
                assert left > 0, f"{key}={value} never arrived: {self.items}"
                self.cond.wait(left)


def test_get_several_keys_sqlite(client, config_sidecar):
    sqlite_set(config_sidecar.config_db, "py-a", "alpha", "1")
    sqlite_set(config_sidecar.config_db, "py-b", "beta", "2")

    resp = client.get_configuration("configstore", ["py-a", "py-b", "py-none"])

    assert set(resp.items) == {"py-a", "py-b"}
    assert resp.items["py-a"].value == "alpha"
    assert resp.items["py-a"].version == "1"
    assert resp.items["py-b"].value == "beta"


@pytest.mark.parametrize("store", ["configstore", "redisconfig"])
def test_subscribe_sees_changes_then_unsubscribe(client, config_sidecar, store):
    key = f"py-sub-{uuid.uuid4().hex[:8]}"

    def write(value: str, version: str) -> None:
        if store == "configstore":
            sqlite_set(config_sidecar.config_db, key, value, version)
        else:
            redis_set(key, value, version)

    write("first", "1")
    seen = Seen()
    sub_id = client.subscribe_configuration(store, [key], seen.handler)
    assert sub_id

    write("second", "2")
    assert seen.wait_for(key, "second") == sub_id

    assert client.unsubscribe_configuration(store, sub_id) is True
    before = len(seen.items)
    write("third", "3")
    time.sleep(0.5)
    assert len(seen.items) == before, "a change arrived after unsubscribe"
    # Unsubscribing twice: the SDK reports False (daprd's ok=false).
    assert client.unsubscribe_configuration(store, sub_id) is False
    if store == "redisconfig":
        redis_del(key)


def test_unknown_store_is_an_error(client):
    with pytest.raises(Exception) as e:
        client.get_configuration("no-such-store", ["a"])
    assert "configuration store no-such-store not found" in str(e.value)
