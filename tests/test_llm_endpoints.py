"""Endpoints and replies of the LLM backend: adaptive concurrency (AIMD), Retry-After, timeouts that
lower concurrency first, the structured-mode ladder under concurrency, reasoning capture, and the
assistant replies small models give (empty, unknown tool, arguments that are not JSON)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from email.utils import formatdate

import openai
import pytest
from langchain_core.messages import AIMessage

from backends.protocols import AssistantRequest, UserTurnRequest
from backends.llm.endpoints import Endpoint, EndpointPool, retry_after
from backends.llm.replies import BackendOutputError
from backends.llm.backend import OpenAIBackend
from state.tasks import Task
from tests.fakes import ScriptedChatModel
from tests.real_servers import ServerLike
from tests.stub_server import StubHTTPError, StubServer
from tests.test_openai_backend import conversation, run, settings, tools  # noqa: F401 (fixture)

TASK = Task(goal="Find owner Garcia.")
TURN = UserTurnRequest(task=TASK, messages=[], task_start=0, user_turn=0, rng_key="k")


# ---------------------------------------------------------------- AIMD and Retry-After

def test_overload_halves_the_limit_and_successes_add_it_back_up_to_the_cap():
    endpoint = Endpoint(base_url="http://x/v1", cap=8)
    endpoint.overloaded(None)
    endpoint.overloaded(None)
    assert endpoint.limit == 2
    for _ in range(50):
        endpoint.succeeded()
    assert endpoint.limit == 8  # additive increase, never above the cap
    for _ in range(10):
        endpoint.overloaded(None)
    assert endpoint.limit == 1  # never below one


def test_an_endpoint_that_keeps_failing_is_rested_and_the_pool_goes_elsewhere():
    bad, good = Endpoint(base_url="http://bad/v1", cap=4), Endpoint(base_url="http://good/v1", cap=4)
    pool = EndpointPool([bad, good])
    for _ in range(3):
        bad.failed(rest_seconds=60)
    assert bad.rested_until > time.monotonic()

    async def picks() -> list[str]:
        chosen = []
        for _ in range(4):
            endpoint = await pool.acquire()
            chosen.append(endpoint.base_url)
            await pool.release(endpoint)
        return chosen

    assert asyncio.run(picks()) == ["http://good/v1"] * 4


def test_fewest_in_flight_first():
    a, b = Endpoint(base_url="a", cap=4), Endpoint(base_url="b", cap=4)
    pool = EndpointPool([a, b])

    async def hold_three() -> list[str]:
        return [(await pool.acquire()).base_url for _ in range(3)]

    assert asyncio.run(hold_three()) == ["a", "b", "a"]


def test_retry_after_is_read_in_every_form():
    class Response:
        def __init__(self, headers):
            self.headers = headers

    class Error(Exception):
        def __init__(self, headers):
            self.response = Response(headers)

    assert retry_after(Error({"retry-after-ms": "250"})) == 0.25
    assert retry_after(Error({"retry-after": "3"})) == 3.0
    assert 55 < retry_after(Error({"retry-after": formatdate(time.time() + 60, usegmt=True)})) <= 60
    assert retry_after(Error({})) is None


def test_rate_limits_lower_the_endpoints_concurrency_which_never_exceeds_the_cap(monkeypatch):
    limits: list[float] = []
    overloaded = Endpoint.overloaded

    def spy(self, retry_after):
        overloaded(self, retry_after)
        limits.append(self.limit)

    monkeypatch.setattr(Endpoint, "overloaded", spy)
    served = {"n": 0}
    lock = threading.Lock()

    def busy_at_first(request):
        with lock:
            served["n"] += 1
            first = served["n"] <= 3
        if first:
            raise StubHTTPError(429, "slow down", {"retry-after": "0", "retry-after-ms": "30"})
        return '{"user_message": "Hi"}'

    with StubServer(busy_at_first, latency=0.05) as server:
        backend = OpenAIBackend(settings(base_url=server.base_url, max_in_flight=4, http_retries=4))

        async def many():
            return await asyncio.gather(*(backend.user_turn(TURN) for _ in range(12)))

        results = run(many(), backend)
    assert [t.user_message for t, _ in results] == ["Hi"] * 12
    assert server.peak_in_flight <= 4
    assert limits == [2, 1, 1]  # halved on each 429, never below one
    endpoint = backend.caller.router.endpoints[0]
    assert endpoint.limit == 4  # and grown back by the successes after them, up to the cap
    assert endpoint.paused_until > 0  # Retry-After was honoured


def test_a_timeout_first_lowers_concurrency_then_the_request_goes_through():
    calls = {"n": 0}

    def slow_first(request):
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(0.6)
        return '{"user_message": "Hi"}'

    with StubServer(slow_first) as server:
        backend = OpenAIBackend(settings(base_url=server.base_url, request_timeout=0.3, http_retries=2,
                                         max_in_flight=8))
        turn, usage = run(backend.user_turn(TURN), backend)
    assert turn.user_message == "Hi" and usage.llm_calls == 1
    assert backend.caller.router.endpoints[0].limit == pytest.approx(4.25)  # halved, then one success added back


# ---------------------------------------------------------------- structured modes

def test_concurrent_requests_step_down_once_when_a_server_refuses_json_schema():
    server_like = ServerLike(lambda request: '{"user_message": "Hi"}', accept=("json_object",))
    with StubServer(server_like) as server:
        backend = OpenAIBackend(settings(base_url=server.base_url))

        async def many():
            return await asyncio.gather(*(backend.user_turn(TURN) for _ in range(6)))

        results = run(many(), backend)  # no probe first: the first refusals step the endpoint down
    assert [t.user_message for t, _ in results] == ["Hi"] * 6
    endpoint = backend.caller.router.endpoints[0]
    assert endpoint.structured == "json_object" and endpoint.refusals == ["json_schema refused with HTTP 400"]
    assert server_like.formats.count("json_object") == 6


def test_a_mode_given_explicitly_is_not_second_guessed():
    with StubServer(ServerLike(lambda request: '{"user_message": "Hi"}', accept=("json_object",))) as server:
        backend = OpenAIBackend(settings(base_url=server.base_url, structured="json_schema"))
        with pytest.raises(openai.BadRequestError):
            run(backend.user_turn(TURN), backend)


# ---------------------------------------------------------------- reasoning over the wire

@pytest.mark.parametrize("field", ["reasoning_content", "reasoning", "think"])
def test_the_reasoning_a_server_returns_is_kept_apart_from_the_text(tools, field):  # noqa: F811
    server_like = ServerLike(lambda request: "Owner 2 is Rafael Garcia.", reasoning=field)
    with StubServer(server_like) as server:
        backend = OpenAIBackend(settings(base_url=server.base_url))
        message, _ = run(backend.assistant_turn(AssistantRequest(tools=tools, messages=conversation(),
                                                                 rng_key="k")), backend)
    assert message.text.strip() == "Owner 2 is Rafael Garcia."
    assert message.additional_kwargs["reasoning_content"] == server_like.traces[0]


# ---------------------------------------------------------------- replies small models give

def _assistant(*replies, **overrides):
    model = ScriptedChatModel(responses=list(replies))
    return OpenAIBackend(settings(**overrides), chat_model=model), model


def _call(name, args, call_id="c1"):
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id, "type": "tool_call"}])


@pytest.mark.parametrize("bad,counter,feedback", [
    (AIMessage(content=""), "empty_replies", "your reply was empty"),
    (_call("frobnicate", {}), "unknown_tools", "no tool named frobnicate"),
    (AIMessage(content="", invalid_tool_calls=[{"name": "search_owners", "args": "{last_name: Garcia",
                                                "id": "c1", "error": "bad json", "type": "invalid_tool_call"}]),
     "bad_arguments", "were not a JSON object"),
])
def test_a_bad_assistant_reply_is_fed_back_once_and_counted(tools, bad, counter, feedback):  # noqa: F811
    good = _call("search_owners", {"last_name": "Garcia"})
    backend, model = _assistant(bad, good)
    message, usage = run(backend.assistant_turn(AssistantRequest(tools=tools, messages=conversation()[:1],
                                                                 rng_key="k")))
    assert message.tool_calls[0]["name"] == "search_owners"
    assert getattr(usage, counter) == 1 and usage.llm_calls == 2
    retry = model.calls[1]
    assert feedback in retry[-1].text
    assert [type(m).__name__ for m in retry[-3:]] == ["HumanMessage", "AIMessage", "HumanMessage"]  # alternating


def test_an_assistant_that_stays_empty_stops_the_dialogue_with_the_reason(tools):  # noqa: F811
    backend, _ = _assistant(AIMessage(content=""), AIMessage(content="  "))
    with pytest.raises(BackendOutputError) as info:
        run(backend.assistant_turn(AssistantRequest(tools=tools, messages=conversation()[:1], rng_key="k")))
    assert info.value.role == "assistant" and info.value.usage.empty_replies == 2


def test_an_unknown_tool_twice_goes_on_to_the_executor_counted(tools):  # noqa: F811
    backend, _ = _assistant(_call("frobnicate", {}), _call("frobnicate", {"x": 1}))
    message, usage = run(backend.assistant_turn(AssistantRequest(tools=tools, messages=conversation()[:1],
                                                                 rng_key="k")))
    assert message.tool_calls[0]["name"] == "frobnicate" and usage.unknown_tools == 2


def test_small_model_replies_over_a_whole_run_are_counted_in_the_statistics(tmp_path):
    """An assistant that first answers with nothing, then calls a tool that does not exist: the run goes on."""
    from graphs.run import main
    from tests.clinic_model import ClinicModel
    from tests.conftest import CLINIC

    clinic = ClinicModel(CLINIC)
    first_turns: set[str] = set()
    lock = threading.Lock()

    def sloppy(request):
        if not request.get("tools"):
            return clinic(request)
        key = json.dumps(request["messages"][1:2])
        with lock:
            seen = key in first_turns
            first_turns.add(key)
        if not seen:
            return ""  # an empty reply the first time a dialogue's opening is answered
        if "could not be used: your reply was empty" in json.dumps(request["messages"][-1]):
            return {"tool_calls": [{"name": "lookup_everything", "arguments": {}}]}
        return clinic(request)

    out = tmp_path / "run"
    with StubServer(sloppy) as server:
        assert main(["generate", "--db", str(CLINIC), "--dialogues", "2", "--tasks-per-dialogue", "1",
                     "--base-url", server.base_url, "--out", str(out)]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["empty_replies"] >= 1 and stats["unknown_tools"] >= 1
    assert stats["samples"] + stats["rejected"] == 2


def test_the_llm_settings_have_environment_fallbacks(monkeypatch):
    from state.config import Settings

    monkeypatch.setenv("FORGE_STRUCTURED", "json_object")
    monkeypatch.setenv("FORGE_REASONING", "drop")
    monkeypatch.setenv("FORGE_MODEL_FOR", '{"user": "small@http://user-host/v1", "judge": "big"}')
    monkeypatch.setenv("FORGE_EXTRA_BASE_URLS", '["http://b/v1"]')
    given = Settings(base_url="http://a/v1")
    assert (given.structured, given.reasoning) == ("json_object", "drop")
    assert given.role_target("user") == ("small", ["http://user-host/v1"])
    assert given.role_target("judge") == ("big", ["http://a/v1", "http://b/v1"])
    assert given.role_target("assistant") == (given.model, ["http://a/v1", "http://b/v1"])
