"""Calls to the models: a role's request goes to its model on one of its endpoints (with retries and
concurrency control), JSON roles ask for their reply's schema in the endpoint's structured-output
mode and get their parse errors fed back.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, Callable, TypeVar

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import BaseModel, ValidationError

from backends.llm import structured
from backends.llm.endpoints import Endpoint, EndpointPool, Refused, call_with_retries, pool_snapshot
from backends.llm.replies import (BackendOutputError, ReplyError, describe_validation_error, extract_json_object,
                                  feedback_message, usage_of, with_reasoning_apart, without_reasoning)
from backends.llm.reply_models import schema_of
from backends.llm.router import Router
from state.config import Settings
from state.dialogue import Usage

log = logging.getLogger(__name__)

T = TypeVar("T")


class LLMCaller:
    def __init__(self, settings: Settings, chat_model: BaseChatModel | None = None) -> None:
        self.settings = settings
        self.router = Router(settings, chat_model)
        self._probe_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Lock]] = \
            weakref.WeakKeyDictionary()

    # ------------------------------------------------------------ plain chat (the assistant's turns)

    async def chat(self, prompt: str, messages: list[BaseMessage], tools: list[dict[str, Any]] | None = None,
                   **kwargs: Any) -> AIMessage:
        """One reply on the role's model; reasoning stays out of what is sent and is kept apart in what
        comes back (or dropped, with --reasoning drop)."""
        model_name, pool = self.router.route(prompt)
        # Our chat model leaves reasoning out of the request it builds (chat.py); another one gets copies without it.
        sent = messages if self.router.given_model is None else without_reasoning(messages)

        async def send(endpoint: Endpoint) -> BaseMessage:
            model = await self.router.chat_model(endpoint, model_name)
            if tools:
                model = model.bind_tools(tools)  # type: ignore[assignment]
            return await model.ainvoke(sent, **kwargs)

        reply = await self._call(pool, send)
        if not isinstance(reply, AIMessage):
            reply = AIMessage(content=reply.content)
        return with_reasoning_apart(reply, keep=self.settings.reasoning == "keep")

    async def _call(self, pool: EndpointPool, send: Callable[[Endpoint], Any]) -> Any:
        try:
            return await call_with_retries(pool, send, retries=self.settings.http_retries,
                                           rest_seconds=self.settings.endpoint_rest)
        except Refused as refused:
            raise refused.error from None

    # ------------------------------------------------------------ JSON roles

    async def ask_json(self, prompt: str, messages: list[BaseMessage], parse: Callable[[dict[str, Any]], T],
                       schema: type[BaseModel] | dict[str, Any], **options: Any) -> tuple[T, Usage]:
        """Ask in the endpoint's structured mode, parse the reply's JSON with `parse`, and on failure feed
        the error back and ask again (in every mode: a schema-constrained reply can still break a role's
        own checks). `options` (e.g. a temperature) go with every request of this call."""
        schema_dict = schema_of(schema) if isinstance(schema, type) else structured.bounded(schema)
        history = list(messages)
        usage = Usage()
        error, text = "", ""
        attempts = self.settings.parse_retries + 1
        for _ in range(attempts):
            reply = await self._structured_reply(prompt, history, schema_dict, **options)
            usage = usage + usage_of(reply)
            text = with_reasoning_apart(reply, keep=False).text  # thinking is never parsed nor sent back
            cut_off = (reply.response_metadata or {}).get("finish_reason") == "length"
            try:
                obj, skipped = extract_json_object(text)
                try:
                    return parse(obj), usage
                except ValidationError as exc:
                    error = describe_validation_error(exc)
                    if skipped:
                        error += f" (an earlier '{{' in the reply did not parse: {skipped})"
            except ReplyError as exc:
                error = str(exc)
            if cut_off:
                error += " (the reply was cut off at the length limit: write less)"
            usage = usage + Usage(parse_failures=1)
            log.info("%s: the reply did not parse (%s): %.400r", prompt, error, text)  # FORGE_LOG_LEVEL=INFO
            history += [AIMessage(content=text), feedback_message(error)]
        raise BackendOutputError(prompt, error, attempts=attempts, usage=usage, last_reply=text)

    async def _structured_reply(self, prompt: str, history: list[BaseMessage], schema: dict[str, Any],
                                **options: Any) -> BaseMessage:
        model_name, pool = self.router.route(prompt)

        async def send(endpoint: Endpoint) -> BaseMessage:
            model = await self.router.chat_model(endpoint, model_name)
            mode = endpoint.structured or structured.first_mode(self.settings.structured)
            fmt = structured.response_format(mode, prompt, schema)
            try:
                return await (model.ainvoke(history, response_format=fmt, **options) if fmt
                              else model.ainvoke(history, **options))
            except openai.APIStatusError as exc:
                exc.sent_mode = mode  # type: ignore[attr-defined]
                raise

        while True:
            try:
                return await call_with_retries(pool, send, retries=self.settings.http_retries,
                                               rest_seconds=self.settings.endpoint_rest)
            except Refused as refused:  # e.g. a schema this server cannot turn into a grammar: step down
                if not self._step_down(refused.endpoint, getattr(refused.error, "sent_mode", "prompt"),
                                       refused.error.status_code):
                    raise refused.error from None

    def _step_down(self, endpoint: Endpoint, refused_mode: str, status: int) -> bool:
        """The next mode down after a refusal (once per mode: concurrent refusals of one mode step once)."""
        current = endpoint.structured or structured.first_mode(self.settings.structured)
        if current != refused_mode:
            return True  # another request already stepped down; send again in the new mode
        lower = structured.next_mode(refused_mode, self.settings.structured)
        if lower is None:
            return False
        endpoint.refusals.append(f"{refused_mode} refused with HTTP {status}")
        endpoint.structured = lower
        return True

    # ------------------------------------------------------------ finding each endpoint's mode

    async def _probe(self, endpoint: Endpoint, model_name: str) -> None:
        """One small request finds the mode an endpoint accepts. Without it (a backend used directly),
        requests start at the top of the ladder and step down on the first refusal."""
        locks = self._probe_locks.setdefault(asyncio.get_running_loop(), {})
        async with locks.setdefault(id(endpoint), asyncio.Lock()):
            if endpoint.structured is not None:
                return
            wanted = self.settings.structured
            if self.router.given_model is not None or wanted == "prompt":
                endpoint.structured = structured.first_mode(wanted)  # nothing to find out
                return
            mode: str | None = structured.first_mode(wanted)
            probe_pool = EndpointPool([endpoint])
            while mode is not None and mode != "prompt":
                fmt = structured.response_format(mode, "probe", structured.PROBE_SCHEMA)

                async def send(ep: Endpoint, fmt: dict[str, Any] | None = fmt) -> BaseMessage:
                    model = await self.router.chat_model(ep, model_name)
                    return await model.ainvoke([HumanMessage(content=structured.PROBE_PROMPT)],
                                               response_format=fmt, extra_body={"max_tokens": 16})
                try:
                    await call_with_retries(probe_pool, send, retries=0, rest_seconds=self.settings.endpoint_rest)
                except Refused as refused:
                    lower = structured.next_mode(mode, wanted)
                    if lower is None:
                        raise refused.error from None
                    endpoint.refusals.append(f"{mode} refused with HTTP {refused.error.status_code}")
                    mode = lower
                    continue
                except (openai.APIError, OSError) as exc:  # busy or down: assume the first mode, step down later
                    endpoint.refusals.append(f"probe failed: {type(exc).__name__}")
                break
            endpoint.structured = mode

    async def settle(self) -> list[str]:
        """Find the structured mode of every endpoint a JSON role uses; one line on each, for the run's start."""
        for role in ("user", "judge", "generator"):
            model_name, pool = self.router.routes[role]
            for endpoint in pool.endpoints:
                if endpoint.structured is None:
                    await self._probe(endpoint, model_name)
        endpoints = self.router.json_endpoints()
        return structured.describe({e.label: e.structured for e in endpoints}, {e.label: e.refusals for e in endpoints})

    def record(self) -> dict[str, Any]:
        """The models per role and what was learned about each endpoint, for the dataset's metadata."""
        return {"models": self.router.models(),
                "structured_outputs": {e.label: e.structured for e in self.router.json_endpoints() if e.structured}}

    def endpoints(self) -> list[dict[str, Any]]:
        return pool_snapshot(self.router.endpoints)

    async def aclose(self) -> None:
        await self.router.aclose()
