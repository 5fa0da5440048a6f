"""The conversation API with the official Python SDK (``DaprClient`` over
gRPC) against ``conversation.echo``: ``converse_alpha1`` and
``converse_alpha2`` answers, PII scrubbing of inputs and answers, tool
calls, usage, and daprd's error for an unknown component."""

from __future__ import annotations

import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc import conversation as cv

from conftest import _stop, component_yaml, start_sidecar

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def conv_sidecar(tmp_path_factory):
    work = tmp_path_factory.mktemp("conversation")
    (work / "resources").mkdir()
    (work / "resources" / "echo.yaml").write_text(component_yaml("echo", "conversation.echo", {}))
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
def client(conv_sidecar):
    with DaprClient(address=conv_sidecar.grpc_address) as c:
        yield c


def test_alpha1_echo_with_scrubbed_input(client):
    r = client.converse_alpha1(
        "echo",
        [
            cv.ConversationInput(content="my email is ann@example.org", role="user", scrub_pii=True),
            cv.ConversationInput(content="and my phone 555-123-4567", role="user"),
        ],
        context_id="py-ctx",
    )
    assert r.context_id == "py-ctx"
    assert r.outputs[0].result == "my email is <EMAIL_ADDRESS>\nand my phone 555-123-4567"


def test_alpha1_answer_scrubbed(client):
    r = client.converse_alpha1(
        "echo", [cv.ConversationInput(content="server 192.168.0.10")], scrub_pii=True
    )
    assert r.outputs[0].result == "server <IP>"


def test_alpha2_tools_usage_and_scrubbing(client):
    weather = cv.ConversationTools(
        function=cv.ConversationToolsFunction(
            name="get_weather",
            description="the weather in a city",
            parameters={
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        )
    )
    r = client.converse_alpha2(
        "echo",
        [
            cv.ConversationInputAlpha2(
                messages=[
                    cv.create_system_message("be brief"),
                    cv.create_user_message("card 4111 1111 1111 1111, weather?"),
                ],
                scrub_pii=True,
            )
        ],
        tools=[weather],
        context_id="py-2",
    )
    assert r.context_id == "py-2"
    choice = r.outputs[0].choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "be brief\ncard <CREDIT_CARD>, weather?"
    call = choice.message.tool_calls[0]
    assert (call.id, call.function.name, call.function.arguments) == ("0", "get_weather", "city")
    assert r.outputs[0].usage.total_tokens == 2 * r.outputs[0].usage.completion_tokens > 0


def test_alpha2_answer_scrubbed(client):
    r = client.converse_alpha2(
        "echo",
        [cv.ConversationInputAlpha2(messages=[cv.create_user_message("write to x@y.io")])],
        scrub_pii=True,
    )
    assert r.outputs[0].choices[0].message.content == "write to <EMAIL_ADDRESS>"
    assert r.outputs[0].choices[0].finish_reason == "stop"


def test_unknown_component(client):
    with pytest.raises(DaprGrpcError) as e:
        client.converse_alpha2(
            "nope", [cv.ConversationInputAlpha2(messages=[cv.create_user_message("hi")])]
        )
    assert "failed finding conversation component nope" in str(e.value)
