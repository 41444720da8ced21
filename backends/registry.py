"""Which backend runs: chosen by name from the settings, never by the nodes."""

from __future__ import annotations

from langchain_core.globals import set_llm_cache

from backends.base import Backend
from backends.offline import OfflineBackend
from backends.openai import OpenAIBackend
from environment.errors import InputError
from state.config import Settings

_CUSTOM: dict[str, Backend] = {}
_BUILT: dict[tuple, Backend] = {}


def register_backend(name: str, backend: Backend) -> None:
    """Make a backend instance (e.g. one around a scripted chat model) available by name."""
    _CUSTOM[name] = backend


_CACHE_PATH: list[str | None] = [None]


def use_llm_cache(path: str | None) -> None:
    """Answer repeated LLM requests (same prompt, same model settings) from a SQLite cache, or stop doing so.

    LangChain's cache is process-wide; it follows the settings of the backend last asked for.
    """
    if _CACHE_PATH[0] == path:
        return
    if path is None:
        set_llm_cache(None)
    else:
        from langchain_community.cache import SQLiteCache

        set_llm_cache(SQLiteCache(database_path=path))
    _CACHE_PATH[0] = path


def backend_for(settings: Settings) -> Backend:
    use_llm_cache(settings.llm_cache)
    if settings.backend in _CUSTOM:
        return _CUSTOM[settings.backend]
    if settings.backend == "offline":
        return _BUILT.setdefault(("offline",), OfflineBackend())
    if settings.backend == "openai":
        key = ("openai", settings.model_dump_json())
        if key not in _BUILT:
            _BUILT[key] = OpenAIBackend(settings)
        return _BUILT[key]
    known = ", ".join(["offline", "openai", *_CUSTOM])
    raise InputError(f"unknown backend {settings.backend!r} (choose one of: {known})")


async def close_backends() -> None:
    """Close the running loop's HTTP connections of every backend built so far (each stays usable)."""
    for backend in [*_BUILT.values(), *_CUSTOM.values()]:
        aclose = getattr(backend, "aclose", None)
        if aclose is not None:
            await aclose()


def agent_backend_for(settings: Settings):
    """The user-agent (method B) backend, chosen by the same rule as `backend_for`."""
    from backends.agent_base import registered_agent_backend

    use_llm_cache(settings.llm_cache)
    custom = registered_agent_backend(settings.backend)
    if custom is not None:
        return custom
    if settings.backend == "offline":
        from backends.offline.agent import OfflineAgentBackend

        return _BUILT.setdefault(("agent-offline",), OfflineAgentBackend())
    if settings.backend == "openai":
        from backends.openai_agent import OpenAIAgentBackend

        key = ("agent-openai", settings.model_dump_json())
        if key not in _BUILT:
            _BUILT[key] = OpenAIAgentBackend(settings)
        return _BUILT[key]
    raise InputError(f"unknown backend {settings.backend!r} for the user agent (choose one of: offline, openai)")
