"""ChatOpenAI that posts the request as plain JSON and reads the reply as plain JSON.

A profile of a dialogue run against a local server (cProfile on CPU time, concurrency 1) put about
40% of the framework's own time per LLM call in the openai client's typed layer: walking every
request parameter against its TypedDict, building a pydantic ChatCompletion from the reply only for
langchain to dump it back to a dict, and a hop to a worker thread to turn that dict into a message.
langchain already builds the request in wire format, so it goes to the client's `post` untouched and
the reply's JSON goes straight to langchain's own converter. The client still does what matters: its
connection pool, headers, timeout, retries with backoff (honouring Retry-After) and its error types.
Requests the typed layer is needed for (a pydantic `response_format`, the Responses API) take the
ordinary path.
"""

from __future__ import annotations

from typing import Any

import httpx
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langchain_openai import ChatOpenAI


class DirectChatOpenAI(ChatOpenAI):
    def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict:
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        for message in payload.get("messages", []):
            if message.get("role") == "assistant" and message.get("content") is None:
                message["content"] = ""  # llama.cpp's server refuses a null content beside tool calls
        return payload

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        payload = self._get_request_payload(messages, stop=stop, **kwargs)
        if not _plain(payload) or self._use_responses_api(payload):
            return await super()._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)
        body = {k: v for k, v in payload.items() if k not in ("extra_body", "extra_headers", "extra_query")}
        body.update(payload.get("extra_body") or {})
        response = await self.root_async_client.post("/chat/completions", body=body, cast_to=httpx.Response,
                                                     options={"headers": payload.get("extra_headers") or {}})
        generation_info = {"headers": dict(response.headers)} if self.include_response_headers else None
        return self._create_chat_result(response.json(), generation_info)


def _plain(payload: dict[str, Any]) -> bool:
    """Whether the request is JSON as it stands: no streaming, no pydantic class as response format."""
    return not payload.get("stream") and isinstance(payload.get("response_format", {}), dict)
