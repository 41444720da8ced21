"""Before a run starts: the backend it will use is set up and reachable, and the user is told which it is."""

from __future__ import annotations

import httpx
from rich.console import Console

from backends.protocols import Lifecycle
from backends.registry import backend_for
from environment.errors import InputError
from runner.ray_executor import check_ray
from state.config import LLM_ROLES, RunConfig, Settings


def capped(settings: Settings, config: RunConfig) -> Settings:
    """The settings with each endpoint's concurrency capped at the run's: never more requests at once. The one
    home of the cap: a run's entry caps through `run_settings`, and the lanes of each process (runner.lanes) cap
    at their own share of the concurrency (a worker process's is less than the run's)."""
    if settings.max_in_flight == config.concurrency:
        return settings
    return settings.model_copy(update={"max_in_flight": config.concurrency})


def run_settings(settings: Settings, config: RunConfig, executor: bool = True) -> Settings:
    """The settings a run goes with, checked before anything is written: capped at the run's concurrency, the
    backend set up and reachable, and (with `executor`, for a run that may go to Ray) the executor at hand."""
    settings = capped(settings, config)
    check_backend(settings)
    if executor and settings.executor == "ray":
        check_ray(settings.ray_address)
    return settings


def check_backend(settings: Settings) -> None:
    """Fail fast, before anything is written, on an unknown backend or an unreachable server.

    With several endpoints for a role, one that does not answer is left to the run (it is rested
    there and the others carry on); a role none of whose endpoints answers stops the run here.
    """
    try:
        backend_for(settings.model_copy(update={"llm_cache": None}))  # the cache lives in a folder not made yet
    except InputError:
        raise
    except Exception as exc:  # e.g. a base URL the HTTP client cannot parse
        raise InputError(f"cannot set up the {settings.backend} backend: {str(exc).splitlines()[0]} "
                         f"(check --base-url / OPENAI_BASE_URL)") from None
    if not settings.uses_server:
        return
    key = settings.api_key.get_secret_value() if settings.api_key else "not-needed"
    answers: dict[str | None, str] = {}
    for role in LLM_ROLES:
        urls = settings.role_target(role)[1]
        for url in urls:
            if url not in answers:
                answers[url] = _reachability(url, key)
        refused = next((answers[u] for u in urls if answers[u].startswith("refused")), None)
        if refused:
            raise InputError(f"the model server at {refused.split(' ', 1)[1]} (check OPENAI_API_KEY)")
        if all(answers[u] for u in urls):
            raise InputError(f"cannot reach the model server at {', '.join(answers[u] for u in urls)} "
                             f"(check --base-url / OPENAI_BASE_URL)")


def _reachability(url: str | None, key: str) -> str:
    """"" when the server answers; else why not ("refused ..." when it refused the key)."""
    shown = url or "https://api.openai.com/v1"
    try:
        response = httpx.get(shown.rstrip("/") + "/models", timeout=5.0, headers={"Authorization": f"Bearer {key}"})
    except Exception as exc:  # unreachable, or a URL the client cannot parse
        return f"{shown}: {type(exc).__name__}"
    if response.status_code in (401, 403):
        return f"refused {shown} refused the API key (HTTP {response.status_code})"
    return ""


async def settle_backend(backend: Lifecycle, console: Console) -> None:
    """Get the backend ready before the work starts (each endpoint's structured-output mode), and say how."""
    for line in await backend.settle():
        console.print(line)


async def start_backend(settings: Settings, console: Console) -> None:
    """Before a run's first model call: say which backend runs, and get it ready (the lanes of each process
    settle it again, quietly: a worker process or a Ray task has a backend of its own)."""
    backend_notice(settings, console)
    await settle_backend(backend_for(settings), console)


def backend_notice(settings: Settings, console: Console, offline: str = "") -> None:
    """Say which backend runs; the offline one says it is no LLM (and, with `offline`, what it does instead)."""
    if not settings.uses_model:
        detail = f": {offline}" if offline else ""
        console.print(f"[yellow]backend: offline[/] (deterministic, no LLM{detail}; pass --base-url or set "
                      "OPENAI_BASE_URL to generate with a model)")
    else:
        console.print(f"backend: {settings.backend} (model {settings.model} at {settings.base_url or 'OpenAI'})")
