"""Before a run starts: the backend it will use is set up and reachable, and the user is told which it is."""

from __future__ import annotations

import httpx
from rich.console import Console

from backends.registry import backend_for
from environment.errors import InputError
from state.config import Settings


def check_backend(settings: Settings) -> None:
    """Fail fast, before anything is written, on an unknown backend or an unreachable server."""
    try:
        backend_for(settings.model_copy(update={"llm_cache": None}))  # the cache lives in a folder not made yet
    except InputError:
        raise
    except Exception as exc:  # e.g. a base URL the HTTP client cannot parse
        raise InputError(f"cannot set up the {settings.backend} backend: {str(exc).splitlines()[0]} "
                         f"(check --base-url / OPENAI_BASE_URL)") from None
    if settings.backend != "openai":
        return
    url = (settings.base_url or "https://api.openai.com/v1").rstrip("/") + "/models"
    key = settings.api_key.get_secret_value() if settings.api_key else "not-needed"
    try:
        response = httpx.get(url, timeout=5.0, headers={"Authorization": f"Bearer {key}"})
    except Exception as exc:  # unreachable, or a URL the client cannot parse
        raise InputError(f"cannot reach the model server at {settings.base_url or url}: "
                         f"{type(exc).__name__} (check --base-url / OPENAI_BASE_URL)") from None
    if response.status_code in (401, 403):
        raise InputError(f"the model server at {settings.base_url or url} refused the API key "
                         f"(HTTP {response.status_code}; check OPENAI_API_KEY)")


def backend_notice(settings: Settings, console: Console, offline: str = "") -> None:
    """Say which backend runs; the offline one says it is no LLM (and, with `offline`, what it does instead)."""
    if settings.backend == "offline":
        detail = f": {offline}" if offline else ""
        console.print(f"[yellow]backend: offline[/] (deterministic, no LLM{detail}; pass --base-url or set "
                      "OPENAI_BASE_URL to generate with a model)")
    else:
        console.print(f"backend: {settings.backend} (model {settings.model} at {settings.base_url or 'OpenAI'})")
