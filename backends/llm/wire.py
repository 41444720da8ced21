"""Chat-completion requests posted straight over an aiohttp session, with the openai SDK's headers and
error types.

Why not the SDK's own `post`: with a reply in hand every millisecond of the client's is framework
overhead, and a profile against a local server (benchmarks/throughput.py) put the SDK's request
building, httpx2's URL and header models and the transport adapter at about 1.3 ms of CPU per call,
where aiohttp alone takes under 1 ms. The request on the wire is the same (same URL, headers, JSON
body); errors come back as the SDK's own exceptions (built by the SDK from the reply), so retries,
Retry-After and refusals are handled exactly as before.

The proxy the environment names for the endpoint (HTTPS_PROXY, NO_PROXY, ...) is found once, when the
wire is made: a session that trusts the environment looks it up, and ~/.netrc, on a worker thread for
every request (two thread hops per call, and a netrc entry for the host would clash with the bearer
header).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import httpx2
import openai
from aiohttp.helpers import BasicAuth, get_env_proxy_for_url
from yarl import URL


def env_proxy(url: str) -> tuple[URL | None, BasicAuth | None]:
    """The proxy (and its credentials) the environment names for `url`, or (None, None): what aiohttp's
    trust_env looks up per request. It reads environment variables (and netrc for the proxy's
    credentials): make it off the event loop."""
    try:
        return get_env_proxy_for_url(URL(url))
    except LookupError:
        return None, None


class Wire:
    """The request target and headers of one OpenAI client, posted over a shared aiohttp session."""

    def __init__(self, client: openai.AsyncOpenAI, session: aiohttp.ClientSession, timeout: float,
                 proxy: tuple[URL | None, BasicAuth | None] = (None, None)) -> None:
        self.client = client
        self.session = session
        self.url = str(client.base_url).rstrip("/") + "/chat/completions"
        self.proxy, self.proxy_auth = proxy
        headers = {**client.default_headers, **client.auth_headers}
        self.headers = {k: v for k, v in headers.items() if isinstance(v, str)}  # the SDK's Omit marks absent ones
        # like the SDK's timeout: each of connecting and every wait for bytes may take this long
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)

    @classmethod
    def usable(cls, client: openai.AsyncOpenAI) -> bool:
        """Plain bearer-key auth (every OpenAI-compatible server); other schemes keep the SDK's path."""
        return "Authorization" in client.auth_headers and type(client) is openai.AsyncOpenAI

    async def post(self, body: dict[str, Any], extra_headers: dict[str, str] | None = None) -> tuple[dict, dict]:
        """(reply JSON, reply headers); raises openai.APIStatusError, APITimeoutError or APIConnectionError."""
        headers = {**self.headers, **extra_headers} if extra_headers else self.headers
        try:
            async with self.session.post(self.url, data=json.dumps(body), headers=headers, timeout=self.timeout,
                                         proxy=self.proxy, proxy_auth=self.proxy_auth) as response:
                raw = await response.read()
                status, reply_headers = response.status, dict(response.headers)
        except asyncio.TimeoutError:  # aiohttp's timeouts subclass it
            raise openai.APITimeoutError(request=self._request()) from None
        except aiohttp.ClientError as exc:
            raise openai.APIConnectionError(message=f"Connection error: {exc}", request=self._request()) from exc
        if status >= 400:
            raise self.client._make_status_error_from_response(self._response(status, reply_headers, raw))
        try:
            return json.loads(raw), reply_headers
        except ValueError as exc:
            raise openai.APIResponseValidationError(
                response=self._response(status, reply_headers, raw), body=raw.decode(errors="replace"),
                message=f"the server's reply is not JSON: {exc}") from None

    def _request(self) -> httpx2.Request:
        return httpx2.Request("POST", self.url)

    def _response(self, status: int, headers: dict[str, str], raw: bytes) -> httpx2.Response:
        """The reply as the SDK's errors carry it (only built when something went wrong)."""
        return httpx2.Response(status, headers=headers, content=raw, request=self._request())
