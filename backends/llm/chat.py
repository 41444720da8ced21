"""The chat model of one endpoint: LangChain's ChatOpenAI, lean on the wire and keeping reasoning."""

from __future__ import annotations

from typing import Any

import openai
from langchain_core.outputs import ChatResult
from langchain_openai import ChatOpenAI

from backends.llm.replies import REASONING

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
    """

    def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict:
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        for message in payload.get("messages", ()):
            message.pop(REASONING, None)  # earlier reasoning is never sent back (langchain leaves it out today)
        if self._use_responses_api(payload) or not isinstance(payload.get("response_format", {}), dict):
            return payload  # those client paths need the typed parameters
        plain = {key: payload.pop(key) for key in ("messages", "tools", "response_format") if key in payload}
        payload["messages"] = []
        payload["extra_body"] = {**(payload.get("extra_body") or {}), **plain}
        return payload

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
                http_async_client: Any = None) -> LeanChatOpenAI:
    return LeanChatOpenAI(
        model=model,
        base_url=base_url,
        api_key=api_key,
        temperature=temperature,
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
