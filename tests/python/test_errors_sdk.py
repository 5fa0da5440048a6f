"""Dapr's richer error model through the official Python SDK (gRPC).

daprd attaches ``google.rpc`` details to state and pub/sub errors; the SDK's
``DaprGrpcError`` parses them from ``grpc-status-details-bin``: the
``ErrorInfo`` reason (``error_code()``), ``ResourceInfo``
(``status_details().resource_info``) and ``BadRequest``
(``status_details().bad_request``) — the names the SDK (1.19.0, and its
main branch) gives them.
"""

from __future__ import annotations

import grpc
import pytest
from dapr.clients.exceptions import DaprGrpcError


def test_missing_state_store_has_reason(dapr_client):
    with pytest.raises(DaprGrpcError) as exc:
        dapr_client.get_state("no-such-store", "k")
    err = exc.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "state store no-such-store is not found"
    assert err.error_code() == "DAPR_STATE_NOT_FOUND"
    info = err.status_details().error_info
    assert info["domain"] == "dapr.io"
    # daprd's gRPC lookup names no resource for a store that doesn't exist.
    assert err.status_details().resource_info is None


def test_illegal_key_has_reason_resource_and_field(dapr_client, key):
    bad = key() + "||x"
    with pytest.raises(DaprGrpcError) as exc:
        dapr_client.save_state("memstore", bad, "v")
    err = exc.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.error_code() == "DAPR_STATE_ILLEGAL_KEY"
    details = err.status_details()
    assert details.resource_info["resource_type"] == "state"
    assert details.resource_info["resource_name"] == "memstore"
    assert details.bad_request["field_violations"][0]["field"] == bad


def test_publish_to_missing_pubsub_has_reason(dapr_client):
    with pytest.raises(DaprGrpcError) as exc:
        dapr_client.publish_event("no-such-pubsub", "topic", data="{}")
    err = exc.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.error_code() == "DAPR_PUBSUB_NOT_FOUND"
