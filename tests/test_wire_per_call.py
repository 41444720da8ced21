"""What one LLM call over the wire does not repeat: the environment's proxy is looked up once per
endpoint, not per request, and ~/.netrc is not read per request; a proxy the environment names is still
the one requests go through."""

from __future__ import annotations

import aiohttp.client
import aiohttp.helpers

from backends.llm import wire
from backends.llm.backend import OpenAIBackend
from backends.protocols import UserTurnRequest
from state.tasks import Task
from tests.stub_server import StubServer
from tests.test_openai_backend import run, settings

TURN = UserTurnRequest(task=Task(goal="Find owner Garcia."), messages=[], task_start=0, user_turn=0, rng_key="k")


def _counting(monkeypatch) -> dict[str, int]:
    counts = {"proxy": 0, "netrc": 0}
    proxy_lookup, netrc_lookup = aiohttp.helpers.get_env_proxy_for_url, aiohttp.helpers.netrc_from_env

    def proxy(url):
        counts["proxy"] += 1
        return proxy_lookup(url)

    def netrc():
        counts["netrc"] += 1
        return netrc_lookup()

    for module in (aiohttp.client, wire):  # aiohttp's per-request lookups and the wire's own
        monkeypatch.setattr(module, "get_env_proxy_for_url", proxy)
    monkeypatch.setattr(aiohttp.client, "netrc_from_env", netrc)
    return counts


def test_calls_look_the_proxy_up_once_and_never_read_netrc(monkeypatch):
    counts = _counting(monkeypatch)
    with StubServer() as server:
        backend = OpenAIBackend(settings(base_url=server.base_url))

        async def turns():
            for _ in range(5):
                await backend.user_turn(TURN)

        run(turns(), backend)
        assert server.request_count >= 5
    assert counts == {"proxy": 1, "netrc": 0}  # once for the endpoint, when its chat model was made


def test_a_proxy_from_the_environment_is_used(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    found, _ = wire.env_proxy("http://models.example/v1")
    assert str(found) == "http://proxy.invalid:3128"
    monkeypatch.setenv("NO_PROXY", "models.example")
    assert wire.env_proxy("http://models.example/v1") == (None, None)
