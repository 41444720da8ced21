"""Endpoints and their concurrency: requests of a role spread over its endpoints, fewest in flight
first; each endpoint adapts how many requests it takes at once (AIMD: one more per window of
successes, half as many on 429, 503 or a timeout, never above the cap), honours Retry-After, and is
rested for a while when it keeps failing, so the others carry on.

The learned state (limit, failures, structured-output mode) lives on the endpoint for the whole run;
what belongs to an event loop (the condition requests wait on) is kept per loop.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar

import openai
from langchain_core.exceptions import ContextOverflowError

T = TypeVar("T")

FAILURES_BEFORE_REST = 3
OVERLOAD_STATUS = (429, 503)  # the server says it is busy: lower the load
RETRY_STATUS = (408, 409, 429, 500, 502, 503, 504)


@dataclass(eq=False)
class Endpoint:
    """One OpenAI-compatible server (a base URL) and what the run learned about it."""

    base_url: str | None
    cap: int
    limit: float = 0.0
    in_flight: int = 0
    sent: int = 0
    failures_in_row: int = 0
    rested_until: float = 0.0
    paused_until: float = 0.0
    structured: str | None = None  # the structured-output mode found, None until probed
    refusals: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.limit = self.limit or float(self.cap)

    @property
    def label(self) -> str:
        return self.base_url or "https://api.openai.com/v1"

    def usable(self, now: float) -> bool:
        return self.rested_until <= now and self.paused_until <= now and self.in_flight < int(self.limit)

    def succeeded(self) -> None:
        self.failures_in_row = 0
        self.limit = min(float(self.cap), self.limit + 1.0 / self.limit)

    def overloaded(self, retry_after: float | None) -> None:
        self.limit = max(1.0, self.limit / 2)
        if retry_after:
            self.paused_until = max(self.paused_until, time.monotonic() + retry_after)

    def failed(self, rest_seconds: float) -> None:
        self.failures_in_row += 1
        if self.failures_in_row >= FAILURES_BEFORE_REST:
            self.rested_until = time.monotonic() + rest_seconds
            self.failures_in_row = 0


class EndpointPool:
    """The endpoints one role's requests go to."""

    def __init__(self, endpoints: list[Endpoint]) -> None:
        self.endpoints = endpoints
        self._waiting = 0
        self._changed: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Condition] = \
            weakref.WeakKeyDictionary()

    def _condition(self) -> asyncio.Condition:
        loop = asyncio.get_running_loop()
        condition = self._changed.get(loop)
        if condition is None:
            condition = self._changed[loop] = asyncio.Condition()
        return condition

    def _pick(self, avoid: Endpoint | None) -> Endpoint | None:
        now = time.monotonic()
        usable = [e for e in self.endpoints if e.usable(now)]
        if len(usable) > 1 and avoid in usable:
            usable.remove(avoid)  # a retry goes elsewhere when it can
        if usable:
            return min(usable, key=lambda e: (e.in_flight, e.sent))
        if all(e.rested_until > now for e in self.endpoints):
            # every endpoint is resting: try the one whose rest ends first rather than stall the run
            soonest = min(self.endpoints, key=lambda e: e.rested_until)
            if soonest.in_flight < int(soonest.limit) and soonest.paused_until <= now:
                return soonest
        return None

    async def acquire(self, avoid: Endpoint | None = None) -> Endpoint:
        endpoint = self._pick(avoid)  # the common case takes no lock: nothing awaits between pick and count
        if endpoint is None:
            condition = self._condition()
            async with condition:
                self._waiting += 1
                try:
                    while (endpoint := self._pick(avoid)) is None:
                        now = time.monotonic()
                        waits = [e.paused_until - now for e in self.endpoints if e.paused_until > now]
                        try:  # woken by a release, or when a pause ends
                            await asyncio.wait_for(condition.wait(), timeout=min(waits, default=1.0))
                        except TimeoutError:
                            pass
                finally:
                    self._waiting -= 1
        endpoint.in_flight += 1
        endpoint.sent += 1
        return endpoint

    async def release(self, endpoint: Endpoint) -> None:
        endpoint.in_flight -= 1
        if self._waiting:
            condition = self._condition()
            async with condition:
                condition.notify()


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, or Retry-After in seconds or as a date)."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after")
        if value is None:
            return None
        if value.strip().replace(".", "", 1).isdigit():
            return float(value)
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (ValueError, TypeError):
        return None


def _backoff(attempt: int, asked: float | None) -> float:
    if asked is not None and 0 <= asked <= 60:
        return asked
    return min(8.0, 0.5 * 2 ** attempt) * (1 - 0.25 * random.random())


class Refused(Exception):
    """The server refused the request as malformed (HTTP 400 or 422, or a 5xx that names the request's
    response_format): retrying it as it is will not help."""

    def __init__(self, endpoint: Endpoint, error: openai.APIStatusError) -> None:
        self.endpoint = endpoint
        self.error = error
        super().__init__(str(error))


def _refused(exc: openai.APIStatusError) -> bool:
    """A request the server will never take as it is. llama-cpp-python's server answers a response_format
    it does not know (json_schema) with a validation error under HTTP 500, not 400."""
    return exc.status_code in (400, 422) or (exc.status_code >= 500 and "response_format" in str(exc))


async def call_with_retries(pool: EndpointPool, send: Callable[[Endpoint], Awaitable[T]], *, retries: int,
                            rest_seconds: float) -> T:
    """`send` on an endpoint of the pool; on 429, 503, 5xx, timeouts and connection errors the endpoint
    is told (lower its concurrency, or count a failure) and the request is tried again, elsewhere
    when there is another endpoint, up to `retries` times."""
    last: Endpoint | None = None
    for attempt in range(retries + 1):
        endpoint = await pool.acquire(avoid=last)
        asked: float | None = None
        try:
            result = await send(endpoint)
        except openai.APITimeoutError:
            endpoint.overloaded(None)  # a queueing server: fewer at once before it counts as a failure
            if attempt == retries:
                raise
        except openai.APIStatusError as exc:
            status = exc.status_code
            if _refused(exc) and not isinstance(exc, ContextOverflowError):
                raise Refused(endpoint, exc) from exc
            if status not in RETRY_STATUS or attempt == retries:
                if status >= 500:
                    endpoint.failed(rest_seconds)
                raise
            asked = retry_after(exc)
            if status in OVERLOAD_STATUS:
                endpoint.overloaded(asked)
            else:
                endpoint.failed(rest_seconds)
        except openai.APIConnectionError:
            endpoint.failed(rest_seconds)
            if attempt == retries:
                raise
        else:
            endpoint.succeeded()
            return result
        finally:
            await pool.release(endpoint)
        last = endpoint
        await asyncio.sleep(_backoff(attempt, asked))
    raise AssertionError("unreachable")  # the loop returns or raises


def pool_snapshot(endpoints: list[Endpoint]) -> list[dict[str, Any]]:
    """What the run learned about each endpoint, for the run's records."""
    return [{"base_url": e.label, "structured": e.structured, "requests": e.sent, "limit": round(e.limit, 2)}
            for e in endpoints]
