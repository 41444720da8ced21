"""Stub servers that behave like real OpenAI-compatible servers, not like our own test double.

`ServerLike(inner, ...)` wraps a responder (ClinicModel, stub_agent, a script) that knows our prompts:

- JSON only under `response_format`: without it, a reply the inner responder gave as JSON comes back
  as prose (as a chat model writes when nothing constrains it); with it, the bare JSON object.
- `accept`: the `response_format` types the server takes; any other is refused with `refuse_status`:
  400 by default, or 500 with a validation message as llama-cpp-python's server refuses `json_schema`
  (it takes `{"type": "json_object", "schema": ...}`).
- `reasoning`: "reasoning_content" or "reasoning" adds a thinking field to every reply; "think" puts a
  leading <think> block in the content instead. Each trace is unique, so a test can look for it.
- `fault_rate`: that share of requests fails, in turn: HTTP 500, 429 with Retry-After, or a reply
  whose JSON is cut off.
- `always_fail`: every chat request is answered with HTTP 500 (a broken endpoint).

The probe a run sends to find the structured mode is answered like any JSON request.
"""

from __future__ import annotations

import json
import random
import threading
from typing import Any

try:
    from tests.stub_server import Responder, StubHTTPError, content_text
except ImportError:
    from stub_server import Responder, StubHTTPError, content_text

PROBE = 'Answer with the JSON object {"ok": true}'


def _as_json(reply: Any) -> dict[str, Any] | None:
    if not isinstance(reply, str):
        return None
    text = reply.strip()
    if "```" in text:
        text = text.split("```", 2)[1].removeprefix("json").strip()
    start = text.find("{")
    if start == -1:
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(text, start)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _prose(obj: Any) -> str:
    """What a chat model says when nobody asked for JSON: the gist, in words, with no braces."""
    if isinstance(obj, dict):
        return "; ".join(f"{k.replace('_', ' ')} is {_prose(v)}" for k, v in list(obj.items())[:4])
    if isinstance(obj, list):
        return ", ".join(_prose(v) for v in obj[:3]) or "nothing"
    return str(obj)


class ServerLike:
    def __init__(self, inner: Responder, *, accept: tuple[str, ...] = ("json_schema", "json_object"),
                 reasoning: str | None = None, fault_rate: float = 0.0, always_fail: bool = False,
                 seed: int = 0, refuse_status: int = 400) -> None:
        self.inner = inner
        self.accept = accept
        self.refuse_status = refuse_status
        self.reasoning = reasoning
        self.fault_rate = fault_rate
        self.always_fail = always_fail
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.formats: list[str] = []  # the response_format type of each request ("none" without one)
        self.refused = 0
        self.faults: dict[str, int] = {"500": 0, "429": 0, "cut": 0}
        self.traces: list[str] = []

    def __call__(self, request: dict[str, Any]) -> dict[str, Any] | str:
        fmt = (request.get("response_format") or {}).get("type", "none")
        with self._lock:
            self.formats.append(fmt)
            serial = len(self.formats)
            fault = self._rng.random() < self.fault_rate
        if self.always_fail:
            raise StubHTTPError(500, "the server is broken", {"retry-after-ms": "1"})
        if fmt != "none" and fmt not in self.accept:
            with self._lock:
                self.refused += 1
            if self.refuse_status >= 500:  # llama-cpp-python's server: its request validation error, as a 500
                raise StubHTTPError(self.refuse_status, "1 validation error: {'type': 'literal_error', 'loc': "
                                    f"('body', 'response_format', 'type'), 'msg': \"Input should be 'text' or "
                                    f"'json_object'\", 'input': {fmt!r}}}")
            raise StubHTTPError(self.refuse_status, f"response_format type {fmt!r} is not supported")
        if fault:
            kind = ("500", "429", "cut")[serial % 3]
            with self._lock:
                self.faults[kind] += 1
            if kind == "500":
                raise StubHTTPError(500, "injected server error", {"retry-after-ms": "1"})
            if kind == "429":
                raise StubHTTPError(429, "injected rate limit", {"retry-after": "0", "retry-after-ms": "2"})
        if PROBE in content_text(request["messages"][-1].get("content")):
            reply: Any = '{"ok": true}'
        else:
            reply = self.inner(request)
        obj = _as_json(reply) if not request.get("tools") else None
        if obj is not None:
            if fault:  # cut off mid-object, as a model stopped by its token limit
                reply = json.dumps(obj)[: max(2, len(json.dumps(obj)) // 2)]
            else:
                reply = json.dumps(obj) if fmt != "none" else f"Sure. In short: {_prose(obj)}."
        return self._with_reasoning(reply, serial)

    def _with_reasoning(self, reply: dict[str, Any] | str, serial: int) -> dict[str, Any] | str:
        if self.reasoning is None:
            return reply
        trace = f"thinking-{serial}: let me work out what is asked"
        with self._lock:
            self.traces.append(trace)
        message = {"content": reply} if isinstance(reply, str) else dict(reply)
        if self.reasoning == "think":
            message["content"] = f"<think>{trace}</think>\n{message.get('content') or ''}"
        else:
            message[self.reasoning] = trace
        return message
