"""Which model and endpoints serve each role, and the chat model of each (endpoint, model) per event loop.

Four roles may each run on their own model: `assistant` (the agent the dataset trains), `user` (user
simulator and user agent), `judge` (validator and quality judge) and `generator` (everything that
writes tools, tasks, simulated results and questions). Roles on the same server share its endpoint,
so its concurrency and structured-output mode are learned once.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import aiohttp
import openai
from langchain_core.language_models import BaseChatModel

from backends.llm.chat import chat_openai
from backends.llm.wire import env_proxy
from backends.llm.endpoints import Endpoint, EndpointPool
from state.config import LLM_ROLES, Settings

# Each prompt's role; prompts not listed are the generator's. Solvers are models named per solver.
ROLE_OF = {
    "assistant": "assistant", "knowledge_assistant": "assistant",
    "user_simulator": "user", "user_agent": "user", "user_agent_reflect": "user", "user_agent_turn": "user",
    "validator": "judge", "quality_judge": "judge", "topic_summary": "judge",
    "solver": "solver",
}


class Router:
    def __init__(self, settings: Settings, chat_model: BaseChatModel | None = None) -> None:
        self.settings = settings
        self.given_model = chat_model
        self._endpoints: dict[str | None, Endpoint] = {}
        self.routes: dict[str, tuple[str, EndpointPool]] = {}
        pools: dict[tuple[str | None, ...], EndpointPool] = {}
        for role in (*LLM_ROLES, "solver"):
            model, urls = settings.role_target(role) if role != "solver" else \
                (settings.model, [settings.base_url, *settings.extra_base_urls])
            if chat_model is not None:
                urls = [None]  # one scripted model plays every role
            key = tuple(dict.fromkeys(urls))
            if key not in pools:
                pools[key] = EndpointPool([self._endpoint(url) for url in key])
            self.routes[role] = (model, pools[key])
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, Any]] = \
            weakref.WeakKeyDictionary()

    def _endpoint(self, url: str | None) -> Endpoint:
        if url not in self._endpoints:
            self._endpoints[url] = Endpoint(base_url=url, cap=self.settings.max_in_flight)
        return self._endpoints[url]

    @property
    def endpoints(self) -> list[Endpoint]:
        return list(self._endpoints.values())

    def route(self, prompt: str) -> tuple[str, EndpointPool]:
        return self.routes[ROLE_OF.get(prompt, "generator")]

    def models(self) -> dict[str, str]:
        """The model of each role, as the dataset records it."""
        return {role: self.routes[role][0] for role in LLM_ROLES}

    def json_endpoints(self) -> list[Endpoint]:
        """Endpoints that serve a JSON role (every role but the assistant's)."""
        seen: dict[int, Endpoint] = {}
        for role in ("user", "judge", "generator"):
            for endpoint in self.routes[role][1].endpoints:
                seen.setdefault(id(endpoint), endpoint)
        return list(seen.values())

    async def chat_model(self, endpoint: Endpoint, model: str) -> BaseChatModel:
        """The chat model for (endpoint, model) on the running event loop.

        langchain-openai shares one async HTTP client per (base_url, timeout) across the process, and
        its pooled connections belong to the loop that opened them: a backend reused under a second
        asyncio.run() fails with "Event loop is closed". So each loop gets its own client, built in a
        worker thread because loading TLS certificates reads files (a blocking call on the loop).

        Requests go over aiohttp (plain ones over our session, see backends/llm/wire.py; the SDK's
        typed paths over its own aiohttp transport): with hundreds of requests in flight, httpx's
        connection pool spends most of the CPU (benchmarks/throughput.py: a bare httpx client keeps a
        local server 7% busy at 128 in flight, a bare aiohttp client 72%).
        """
        if self.given_model is not None:
            return self.given_model
        loop = asyncio.get_running_loop()
        models = self._per_loop.get(loop)
        if models is None:
            client = await asyncio.to_thread(openai.DefaultAioHttpClient)
            # no connection limit of its own: each endpoint's pool decides how many requests are in flight
            # the environment's proxy is found once per endpoint (wire.env_proxy), not per request
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), trust_env=False)
            models = self._per_loop.setdefault(loop, {"client": client, "session": session})
        key = (endpoint.base_url, model)
        if key not in models:
            settings = self.settings
            key_text = settings.api_key.get_secret_value() if settings.api_key else "not-needed"
            chat = await asyncio.to_thread(
                chat_openai, model, endpoint.base_url, key_text, settings.temperature, settings.request_timeout,
                models["client"], settings.max_tokens)
            proxy = await asyncio.to_thread(env_proxy, str(chat.root_async_client.base_url))
            models[key] = chat.post_over(models["session"], proxy)
        return models[key]

    async def aclose(self) -> None:
        """Close the running loop's HTTP connections; call it before the loop ends. The router stays usable."""
        models = self._per_loop.pop(asyncio.get_running_loop(), None)
        if models is not None:
            await models["session"].close()
            await models["client"].aclose()
