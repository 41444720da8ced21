"""A tiny OpenAI-compatible chat-completions server (stdlib only) for tests and benchmarks.

    with StubServer(responder, latency=0.0) as server:
        settings = Settings(backend="openai", base_url=server.base_url, ...)

A responder maps the request JSON to the assistant message: a string (its content) or a dict with
`content` and/or `tool_calls` (each `{"name", "arguments", "id"?}` with arguments as a dict or a JSON
string, or already in wire format), optionally `usage` ({"prompt_tokens", "completion_tokens"}) to
override the estimate. `ScriptedResponder` replays a queue and then falls back to `stub_agent`, a
minimal agent that answers every prompt of ours with valid JSON.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable

Responder = Callable[[dict[str, Any]], "dict[str, Any] | str"]


class StubHTTPError(Exception):
    """Raised by a responder to answer with an HTTP error, as a real server would."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


# ---------------------------------------------------------------- responders

def content_text(content: Any) -> str:
    """The text of a chat message's content: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _fill(schema: dict[str, Any], hint: str) -> Any:
    return {"integer": 1, "number": 1.0, "boolean": True}.get(schema.get("type"), hint)


def stub_agent(request: dict[str, Any]) -> dict[str, Any] | str:
    """A minimal but genuine agent for our prompts, recognised by their first lines."""
    messages = request.get("messages", [])
    first = content_text(messages[0].get("content")) if messages else ""
    last = messages[-1] if messages else {}
    if first.startswith("You design the tool interface"):
        return json.dumps({"tools": []})  # the synthesizer then completes the toolset from the schema
    if first.startswith("A SQL tool you proposed was refused"):
        tool = re.search(r"The tool:\n(.*?)\n\nWhy it was refused", first, re.S)
        return tool.group(1) if tool else "{}"
    if first.startswith("You write goals for a simulated user"):
        difficulty = (re.search(r"Write one (\w+) task", first) or [None, "medium"])[1]
        listed = re.findall(r"^- (\w+)\(([^)]*)\)", first, re.M) or [("the_tools", "")]
        # lookups by id (id 1 exists in any table with rows), then the others: a plan that runs
        listed.sort(key=lambda t: (not t[0].startswith("get_"), "," in t[1]))
        names = [n for n, _ in listed]
        count = {"easy": 2, "medium": 3, "hard": 4}.get(difficulty, 3)
        subtasks = []
        for i in range(count):
            name, params = listed[i % len(listed)]
            required = [p.strip() for p in params.split(",") if p.strip() and not p.strip().endswith("?")]
            subtasks.append({"description": f"The user wants the result of {name}.",
                             "ask": f"Could you check {name.replace('_', ' ')} for me?",
                             "steps": [[{"tool": name, "arguments": {p: 1 for p in required}}]]})
        return json.dumps({"goal": "A customer wants to check a few records in the service.", "difficulty": difficulty,
                           "subtasks": subtasks,
                           "rubric": {"success_criteria": ["Each requested result is reported."],
                                      "expected_tool_pattern": [f"{n}(...)" for n in names[:count]],
                                      "checkpoints": ["The first result is shown."]}})
    if first.startswith("You play a person"):
        transcript = content_text(last.get("content"))
        current = transcript.split("your current goal starts below ---")[-1]
        said = len(re.findall(r"^You: ", current, re.M))
        asks = re.findall(r'^\d+\. .*?\(you might say: "(.*)"\)$', first, re.M)
        if said < len(asks):
            return json.dumps({"user_message": asks[said], "is_task_complete": False})
        return json.dumps({"user_message": "That's all, thanks!", "is_task_complete": True})
    if first.startswith("You review one finished conversation"):
        return json.dumps({"judgment": "valid", "reasoning": "Every part was answered from tool results.",
                           "premature_completion": False, "items": []})
    # The assistant: one tool call per user message (the tool it names, else the first), then an answer from
    # the result.
    if last.get("role") == "tool":
        content = content_text(last.get("content"))
        try:
            count = json.loads(content).get("row_count")
        except (ValueError, AttributeError):
            count = None
        if count == 0:
            return "I found no matching records."
        return (f"I found {count} record(s). " if count else "") + f"Here is what I found: {content[:300]}"
    if last.get("role") == "user" and "that's all" in content_text(last.get("content")).lower():
        return "You're welcome, glad I could help."
    tools = [t["function"] for t in request.get("tools", []) if t.get("type") == "function"]
    if tools and last.get("role") == "user":
        words = re.findall(r"[A-Z][a-z]+", content_text(last.get("content")))
        said = content_text(last.get("content")).lower()
        named = sorted((t for t in tools if t["name"].replace("_", " ") in said), key=lambda t: -len(t["name"]))
        tool = named[0] if named else tools[0]
        props = tool.get("parameters", {}).get("properties", {})
        required = tool.get("parameters", {}).get("required", list(props))
        args = {name: _fill(props.get(name, {}), words[-1] if words else "a") for name in required}
        return {"tool_calls": [{"name": tool["name"], "arguments": args}]}
    return "How can I help you today?"


class ScriptedResponder:
    """Replies from a queue, in order and thread-safe; then `fallback` (stub_agent by default)."""

    def __init__(self, replies: Iterable[dict[str, Any] | str] = (), fallback: Responder | None = stub_agent) -> None:
        self._queue = deque(replies)
        self._lock = threading.Lock()
        self.fallback = fallback

    @property
    def remaining(self) -> int:
        return len(self._queue)

    def __call__(self, request: dict[str, Any]) -> dict[str, Any] | str:
        with self._lock:
            reply = self._queue.popleft() if self._queue else None
        if reply is not None:
            return reply
        if self.fallback is None:
            raise RuntimeError("ScriptedResponder: the script is exhausted and there is no fallback")
        return self.fallback(request)


# ---------------------------------------------------------------- wire format

def _wire_message(reply: dict[str, Any] | str, serial: int) -> tuple[dict[str, Any], dict[str, int] | None]:
    if isinstance(reply, str):
        return {"role": "assistant", "content": reply}, None
    reply = dict(reply)
    usage = reply.pop("usage", None)
    calls = []
    for i, call in enumerate(reply.pop("tool_calls", None) or []):
        fn = call.get("function", call)
        args = fn.get("arguments", {})
        calls.append({"id": call.get("id") or f"call_{serial}_{i}", "type": "function",
                      "function": {"name": fn["name"],
                                   "arguments": args if isinstance(args, str) else json.dumps(args)}})
    message = {"role": "assistant", "content": reply.pop("content", None if calls else ""), **reply}
    if calls:
        message["tool_calls"] = calls
    return message, usage


def _estimate_tokens(text: str) -> int:
    return len(text) // 4 + 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connections
    # Headers and body go out in two writes; with Nagle on, the second waits for the client's
    # delayed ACK (~40 ms a request on keep-alive connections).
    disable_nagle_algorithm = True
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            stub = self.server.stub
            self._send(200, {"object": "list",
                             "data": [{"id": stub.model, "object": "model", "created": 0, "owned_by": "stub"}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        try:
            request = json.loads(body)
        except ValueError:
            self._send(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
            return
        self._send(*self.server.stub.complete(request))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    stub: "StubServer"


class StubServer:
    """POST /v1/chat/completions (non-streaming) and GET /v1/models on 127.0.0.1, a free port."""

    def __init__(self, responder: Responder | None = None, *, latency: float = 0.0, fail_first: int = 0,
                 fail_status: int = 429, retry_after_ms: int | None = 1, model: str = "stub-model",
                 record: bool = True) -> None:
        self.responder = responder or ScriptedResponder()
        self.latency = latency
        self.fail_first = fail_first
        self.fail_status = fail_status
        # The openai client honours retry-after-ms, so tests need not wait out its 0.5 s backoff.
        self.retry_after_ms = retry_after_ms
        self.model = model
        self.record = record
        self.request_count = 0
        self.failures_sent = 0
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "the server is not running"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def complete(self, request: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            serial = self.request_count
            self.request_count += 1
            if self.record:
                self.requests.append(request)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)
            if serial < self.fail_first:
                with self._lock:
                    self.failures_sent += 1
                headers = {} if self.retry_after_ms is None else {"retry-after-ms": str(self.retry_after_ms)}
                kind = "rate_limit_error" if self.fail_status == 429 else "server_error"
                return self.fail_status, {"error": {"message": f"injected failure {serial + 1}", "type": kind}}, headers
            if request.get("stream"):
                return 400, {"error": {"message": "the stub server does not stream",
                                       "type": "invalid_request_error"}}, {}
            try:
                message, usage = _wire_message(self.responder(request), serial)
            except StubHTTPError as exc:
                kind = {429: "rate_limit_error", 400: "invalid_request_error"}.get(exc.status, "server_error")
                return exc.status, {"error": {"message": str(exc), "type": kind}}, exc.headers
            except Exception as exc:  # a broken responder is a test bug: fail fast, no client retries
                return 500, {"error": {"message": f"responder failed: {exc!r}", "type": "server_error"}}, \
                    {"x-should-retry": "false"}
            if usage is None:
                prompt = sum(_estimate_tokens(content_text(m.get("content"))) for m in request.get("messages", []))
                completion = _estimate_tokens(
                    (message.get("content") or "") + json.dumps(message.get("tool_calls", "")))
                usage = {"prompt_tokens": prompt, "completion_tokens": completion}
            usage = {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}
            return 200, {
                "id": f"chatcmpl-stub-{serial}", "object": "chat.completion", "created": int(time.time()),
                "model": request.get("model", self.model),
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": "tool_calls" if message.get("tool_calls") else "stop"}],
                "usage": usage,
            }, {}
        finally:
            with self._lock:
                self.in_flight -= 1

    def start(self) -> "StubServer":
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.stub = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="stub-openai-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "StubServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_async_stub(responder: Responder, *, latency: float, on_ready: Callable[[int], None],
                   should_stop: Callable[[], bool]) -> None:
    """The same server on asyncio (aiohttp), for load: no thread per request, latency as a non-blocking sleep.

    Blocks until `should_stop()` turns true; `on_ready(port)` is called once it listens.
    """
    import asyncio

    from aiohttp import web

    stub = StubServer(responder, record=False)

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        if latency:
            await asyncio.sleep(latency)
        status, payload, headers = stub.complete(body)
        return web.json_response(payload, status=status, headers=headers)

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": stub.model, "object": "model"}]})

    async def main() -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", chat)
        app.router.add_get("/v1/models", models)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        on_ready(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        while not should_stop():
            await asyncio.sleep(0.05)
        await runner.cleanup()

    asyncio.run(main())
