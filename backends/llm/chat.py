"""The chat model of one endpoint: LangChain's ChatOpenAI, lean on the wire and keeping reasoning."""

from __future__ import annotations

from typing import Any

import aiohttp
import httpx
import openai
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langchain_openai import ChatOpenAI
from pydantic import PrivateAttr

from backends.llm.replies import REASONING
from backends.llm.wire import Wire

# Where OpenAI-compatible servers put a reasoning model's thinking: vLLM, SGLang, llama.cpp and
# DeepSeek use reasoning_content; Ollama and OpenRouter use reasoning.
_REASONING_FIELDS = ("reasoning_content", "reasoning")


class LeanChatOpenAI(ChatOpenAI):
    """ChatOpenAI that hands the conversation, tools and response format to the client as plain JSON,
    and keeps the reasoning a server returns beside the answer.

    The openai client walks every typed request parameter on each call (about 5 ms for a long
    conversation with 40 tools, the largest framework cost per LLM call); the payload langchain
    builds is already wire-format JSON, so it goes through `extra_body`, which the client merges
    into the request body untouched. The request on the wire is the same. A `response_format` given
    this way also stays off the client's `parse` path, which would reject llama.cpp's
    `{"type": "json_object", "schema": ...}`.

    langchain-openai (1.7) builds the reply message from the standard fields only and drops
    `reasoning_content` / `reasoning`; they are read here from the raw response instead.

    A profile of a run against a local server (cProfile, CPU time, concurrency 1) put much of the rest
    of the per-call cost in the client's typed reply path: a pydantic ChatCompletion built from the
    reply only for langchain to dump it back to a dict, and a hop to a worker thread. Plain requests
    are therefore posted as JSON (over the run's aiohttp session, with the client's headers, timeout
    and error types: `post_over`; otherwise through the client's own `post`) and the reply's JSON
    goes straight to langchain's converter.
    """

    _wire: Wire | None = PrivateAttr(default=None)

    def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict:
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        for message in payload.get("messages", ()):
            message.pop(REASONING, None)  # earlier reasoning is never sent back (langchain leaves it out today)
            if message.get("role") == "assistant" and message.get("content") is None:
                message["content"] = ""  # llama.cpp's server refuses a null content beside tool calls
        if "max_completion_tokens" in payload and self.openai_api_base and "api.openai.com" not in self.openai_api_base:
            # langchain sends only the newer name; llama.cpp's and other servers read max_tokens, and a
            # grammar-constrained reply without a limit can run until the context is full
            payload.setdefault("max_tokens", payload["max_completion_tokens"])
        if self._use_responses_api(payload) or not isinstance(payload.get("response_format", {}), dict):
            return payload  # those client paths need the typed parameters
        plain = {key: payload.pop(key) for key in ("messages", "tools", "response_format") if key in payload}
        payload["messages"] = []
        payload["extra_body"] = {**(payload.get("extra_body") or {}), **plain}
        return payload

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        payload = self._get_request_payload(messages, stop=stop, **kwargs)
        if (payload.get("stream") or self._use_responses_api(payload)
                or not isinstance(payload.get("response_format", {}), dict)):  # the typed client paths
            return await super()._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)
        body = {k: v for k, v in payload.items() if k not in ("extra_body", "extra_headers", "extra_query")}
        body.update(payload.get("extra_body") or {})
        if self._wire is not None:
            reply, headers = await self._wire.post(body, payload.get("extra_headers"))
        else:
            response = await self.root_async_client.post("/chat/completions", body=body, cast_to=httpx.Response,
                                                         options={"headers": payload.get("extra_headers") or {}})
            reply, headers = response.json(), dict(response.headers)
        generation_info = {"headers": headers} if self.include_response_headers else None
        return self._create_chat_result(reply, generation_info)

    def post_over(self, session: aiohttp.ClientSession, proxy: tuple[Any, Any] = (None, None)) -> LeanChatOpenAI:
        """Post plain requests over this aiohttp session, through `proxy` (wire.env_proxy) when there is one
        (backends/llm/wire.py says why); other auth schemes and the typed paths keep the SDK's client."""
        if Wire.usable(self.root_async_client):
            timeout = self.request_timeout
            self._wire = Wire(self.root_async_client, session,
                              float(timeout) if isinstance(timeout, (int, float)) else 600.0, proxy)
        return self

    def _create_chat_result(self, response: dict | openai.BaseModel, generation_info: dict | None = None) -> ChatResult:
        result = super()._create_chat_result(response, generation_info)
        choices = response.get("choices") if isinstance(response, dict) else getattr(response, "choices", None)
        for generation, choice in zip(result.generations, choices or []):
            message = choice.get("message") if isinstance(choice, dict) else getattr(choice, "message", None)
            reasoning = _reasoning_of(message)
            if reasoning:
                generation.message.additional_kwargs[REASONING] = reasoning
        return result


def _reasoning_of(message: Any) -> str:
    if message is None:
        return ""
    extra = message if isinstance(message, dict) else (getattr(message, "model_extra", None) or {})
    for field in _REASONING_FIELDS:
        value = extra.get(field)
        if isinstance(value, str) and value.strip():
            return value
    return ""


def chat_openai(model: str, base_url: str | None, api_key: str, temperature: float, timeout: float,
                http_async_client: Any = None, max_tokens: int | None = None) -> LeanChatOpenAI:
    return LeanChatOpenAI(
        model=model,
        base_url=base_url,
        api_key=api_key,
        temperature=temperature,
        max_tokens=max_tokens,
        timeout=timeout,
        # Retries are ours (backends/llm/endpoints.py): a 429, 503 or timeout must reach the endpoint's
        # concurrency control, and a retry may go to another endpoint.
        max_retries=0,
        http_async_client=http_async_client,
        # Chat completions is what every OpenAI-compatible server speaks; some model names would
        # otherwise be routed to the Responses API.
        use_responses_api=False,
        # We only use whole replies. Without this, a graph streamed with stream_mode="messages" makes
        # ChatOpenAI stream, and on a custom base_url streamed replies carry no token usage.
        disable_streaming=True,
    )
