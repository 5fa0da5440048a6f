"""State management through the official Dapr Python SDK (gRPC), against spar.

Every state test runs once per configured store (``store`` fixture):
``statestore`` (state.sqlite), ``memstore`` (state.in-memory) and
``redisstore`` (state.redis). Keys are
unique per test (``key`` fixture), so tests share one sidecar but never
each other's data.
"""

from __future__ import annotations

import time

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.clients.grpc._state import Concurrency, StateItem, StateOptions

from conftest import STATE_STORES

# How long a TTL'd key may take to disappear: generous, the test polls.
TTL_DEADLINE_S = 20.0


def value_of(client: DaprClient, store: str, key: str) -> bytes:
    return client.get_state(store, key).data


# ------------------------------------------------------------ save / get


def test_save_then_get_returns_value_and_etag(dapr_client, store, key):
    k = key()
    dapr_client.save_state(store, k, "hello")

    resp = dapr_client.get_state(store, k)

    assert resp.data == b"hello"
    assert resp.text() == "hello"
    assert resp.etag, "a store with ETAG support returns an etag"


def test_get_missing_key_returns_empty(dapr_client, store, key):
    resp = dapr_client.get_state(store, key())

    assert resp.data == b""
    assert resp.etag == ""


def test_overwrite_changes_value_and_etag(dapr_client, store, key):
    k = key()
    dapr_client.save_state(store, k, "v1")
    first = dapr_client.get_state(store, k)

    dapr_client.save_state(store, k, "v2")  # no etag: last write wins
    second = dapr_client.get_state(store, k)

    assert second.data == b"v2"
    assert second.etag and second.etag != first.etag


def test_binary_value_roundtrips_unchanged(dapr_client, store, key):
    k = key()
    blob = bytes(range(256)) + b"\x00\xff\xfe not utf-8, not json"
    dapr_client.save_state(store, k, blob)

    assert value_of(dapr_client, store, k) == blob


def test_save_bulk_state_then_get_each(dapr_client, store, key):
    k1, k2 = key(), key()
    dapr_client.save_bulk_state(
        store, [StateItem(key=k1, value="one"), StateItem(key=k2, value="two")]
    )

    assert value_of(dapr_client, store, k1) == b"one"
    assert value_of(dapr_client, store, k2) == b"two"


# ----------------------------------------------------------------- etags


def test_save_with_current_etag_succeeds_and_stale_etag_raises(dapr_client, store, key):
    k = key()
    dapr_client.save_state(store, k, "v1")
    etag1 = dapr_client.get_state(store, k).etag

    dapr_client.save_state(store, k, "v2", etag=etag1)
    etag2 = dapr_client.get_state(store, k).etag
    assert etag2 and etag2 != etag1

    with pytest.raises(DaprGrpcError) as exc:
        dapr_client.save_state(store, k, "v3", etag=etag1)
    assert exc.value.code() == grpc.StatusCode.ABORTED, exc.value.details()

    resp = dapr_client.get_state(store, k)
    assert resp.data == b"v2"
    assert resp.etag == etag2


def test_delete_with_stale_etag_raises_and_keeps_value(dapr_client, store, key):
    k = key()
    dapr_client.save_state(store, k, "v1")
    stale = dapr_client.get_state(store, k).etag
    dapr_client.save_state(store, k, "v2")

    with pytest.raises(DaprGrpcError) as exc:
        dapr_client.delete_state(store, k, etag=stale)
    assert exc.value.code() == grpc.StatusCode.ABORTED, exc.value.details()

    assert value_of(dapr_client, store, k) == b"v2"


def test_first_write_concurrency(dapr_client, store, key):
    k = key()
    first_write = StateOptions(concurrency=Concurrency.first_write)

    # A new key, no etag: the first write wins...
    dapr_client.save_state(store, k, "first", options=first_write)
    # ...and a later write without an etag loses.
    with pytest.raises(DaprGrpcError):
        dapr_client.save_state(store, k, "second", options=first_write)
    current = dapr_client.get_state(store, k)
    assert current.data == b"first"

    # With the current etag the write goes through; the old etag is then stale.
    dapr_client.save_state(store, k, "third", etag=current.etag, options=first_write)
    assert value_of(dapr_client, store, k) == b"third"
    with pytest.raises(DaprGrpcError):
        dapr_client.save_state(store, k, "fourth", etag=current.etag, options=first_write)
    assert value_of(dapr_client, store, k) == b"third"


# ---------------------------------------------------------------- delete


def test_delete_state(dapr_client, store, key):
    k, other = key(), key()
    dapr_client.save_state(store, k, "doomed")
    dapr_client.save_state(store, other, "stays")

    dapr_client.delete_state(store, k)

    resp = dapr_client.get_state(store, k)
    assert resp.data == b""
    assert resp.etag == ""
    assert value_of(dapr_client, store, other) == b"stays"


def test_delete_with_current_etag(dapr_client, store, key):
    k = key()
    dapr_client.save_state(store, k, "doomed")
    etag = dapr_client.get_state(store, k).etag

    dapr_client.delete_state(store, k, etag=etag)

    assert value_of(dapr_client, store, k) == b""


def test_delete_missing_key_is_not_an_error(dapr_client, store, key):
    dapr_client.delete_state(store, key())


# ------------------------------------------------------------------ bulk


def test_get_bulk_state(dapr_client, store, key):
    present = {key(): f"value-{i}".encode() for i in range(3)}
    missing = key()
    for k, v in present.items():
        dapr_client.save_state(store, k, v)

    resp = dapr_client.get_bulk_state(store, [*present, missing], parallelism=2)

    items = {item.key: item for item in resp.items}
    assert set(items) == {*present, missing}
    for k, v in present.items():
        assert items[k].data == v
        assert items[k].etag
        assert not items[k].error
    assert items[missing].data in (b"", "")
    assert not items[missing].etag
    assert not items[missing].error


# ---------------------------------------------------------- transactions


def test_transaction_upserts_and_deletes(dapr_client, store, key):
    updated, created, deleted, untouched = key(), key(), key(), key()
    dapr_client.save_state(store, updated, "old")
    dapr_client.save_state(store, deleted, "gone soon")
    dapr_client.save_state(store, untouched, "same")

    dapr_client.execute_state_transaction(
        store,
        operations=[
            TransactionalStateOperation(key=updated, data="new"),
            TransactionalStateOperation(key=created, data="created"),
            TransactionalStateOperation(
                key=deleted, operation_type=TransactionOperationType.delete
            ),
        ],
    )

    assert value_of(dapr_client, store, updated) == b"new"
    assert value_of(dapr_client, store, created) == b"created"
    assert value_of(dapr_client, store, deleted) == b""
    assert value_of(dapr_client, store, untouched) == b"same"


def test_transaction_with_stale_etag_applies_nothing(dapr_client, store, key):
    fresh, guarded, doomed = key(), key(), key()
    dapr_client.save_state(store, guarded, "v1")
    stale = dapr_client.get_state(store, guarded).etag
    dapr_client.save_state(store, guarded, "v2")
    dapr_client.save_state(store, doomed, "still here")

    with pytest.raises(DaprGrpcError):
        dapr_client.execute_state_transaction(
            store,
            operations=[
                TransactionalStateOperation(key=fresh, data="must not appear"),
                TransactionalStateOperation(
                    key=doomed, operation_type=TransactionOperationType.delete
                ),
                TransactionalStateOperation(key=guarded, data="v3", etag=stale),
            ],
        )

    assert value_of(dapr_client, store, fresh) == b""
    assert value_of(dapr_client, store, doomed) == b"still here"
    assert value_of(dapr_client, store, guarded) == b"v2"


# ------------------------------------------------------------------- TTL


def test_ttl_expires_key(dapr_client, store, key):
    short, long_, plain = key(), key(), key()
    dapr_client.save_state(store, long_, "an hour", state_metadata={"ttlInSeconds": "3600"})
    dapr_client.save_state(store, plain, "forever")
    dapr_client.save_state(store, short, "a second", state_metadata={"ttlInSeconds": "1"})

    # A TTL in the future leaves the value readable.
    assert value_of(dapr_client, store, long_) == b"an hour"

    # The 1 s key disappears: poll, with a generous deadline (no exact timing).
    deadline = time.monotonic() + TTL_DEADLINE_S
    while True:
        resp = dapr_client.get_state(store, short)
        if resp.data == b"":
            break
        assert resp.data == b"a second"
        assert time.monotonic() < deadline, (
            f"key saved with ttlInSeconds=1 still readable after {TTL_DEADLINE_S:.0f}s"
        )
        time.sleep(0.2)

    assert value_of(dapr_client, store, long_) == b"an hour"
    assert value_of(dapr_client, store, plain) == b"forever"


# ---------------------------------------------------------------- errors


def test_unknown_store_is_invalid_argument(dapr_client, key):
    with pytest.raises(DaprGrpcError) as exc:
        dapr_client.get_state("no-such-store", key())
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.value.details()

    with pytest.raises(DaprGrpcError) as exc:
        dapr_client.save_state("no-such-store", key(), "x")
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.value.details()


# -------------------------------------------------------------- metadata


def test_get_metadata_lists_app_id_and_state_stores(dapr_client, sidecar):
    md = dapr_client.get_metadata()

    assert md.application_id == sidecar.app_id
    components = {c.name: c for c in md.registered_components}
    for name, type_ in STATE_STORES.items():
        assert name in components, f"{name} not in {sorted(components)}"
        assert components[name].type == type_
        assert components[name].version == "v1"


@pytest.mark.parametrize("name", sorted(STATE_STORES))
def test_get_metadata_state_store_capabilities(dapr_client, name):
    md = dapr_client.get_metadata()

    components = {c.name: c for c in md.registered_components}
    capabilities = set(components[name].capabilities)
    assert {"ETAG", "TRANSACTIONAL", "TTL"} <= capabilities, capabilities


def test_set_metadata_shows_in_extended_metadata(dapr_client, key):
    attribute = key()
    dapr_client.set_metadata(attribute, "some value")

    md = dapr_client.get_metadata()

    assert md.extended_metadata.get(attribute) == "some value"
