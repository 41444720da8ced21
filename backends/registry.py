"""Which backend runs: chosen by name from the settings, never by the nodes."""

from __future__ import annotations

from langchain_core.globals import set_llm_cache

from backends.llm.backend import OpenAIBackend
from backends.offline import OfflineBackend
from backends.protocols import AgentBackend, Backend, Lifecycle
from environment.errors import InputError
from state.config import Settings

_CUSTOM: dict[str, Backend] = {}
_CUSTOM_AGENT: dict[str, AgentBackend] = {}
_BUILT: dict[tuple, Lifecycle] = {}


def register_backend(name: str, backend: Backend) -> None:
    """Make a backend instance (e.g. one around a scripted chat model) available by name."""
    _CUSTOM[name] = backend


def register_agent_backend(name: str, backend: AgentBackend) -> None:
    """Make a user-agent (method B) backend instance available by name."""
    _CUSTOM_AGENT[name] = backend


def unregister_backends(*names: str) -> None:
    """Forget registered backends of both kinds: every one, or those named."""
    for registry in (_CUSTOM, _CUSTOM_AGENT):
        for name in names or list(registry):
            registry.pop(name, None)


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


def stand_in_backend() -> Backend:
    """The backend whose data-grounded tasks stand in for tasks the plan check refused: the offline one, whichever
    backend runs (its tasks are built from the sources' rows, so their plans pass)."""
    return _BUILT.setdefault(("offline",), OfflineBackend())


async def close_backends() -> None:
    """Close the running loop's HTTP connections of every backend built so far (each stays usable)."""
    for backend in [*_BUILT.values(), *_CUSTOM.values(), *_CUSTOM_AGENT.values()]:
        await backend.aclose()


def agent_backend_for(settings: Settings) -> AgentBackend:
    """The user-agent (method B) backend, chosen by the same rule as `backend_for`."""
    use_llm_cache(settings.llm_cache)
    if settings.backend in _CUSTOM_AGENT:
        return _CUSTOM_AGENT[settings.backend]
    if settings.backend == "offline":
        from backends.offline.user_agent import OfflineAgentBackend

        return _BUILT.setdefault(("agent-offline",), OfflineAgentBackend())
    if settings.backend == "openai":
        from backends.llm.user_agent import OpenAIAgentBackend

        key = ("agent-openai", settings.model_dump_json())
        if key not in _BUILT:
            _BUILT[key] = OpenAIAgentBackend(settings)
        return _BUILT[key]
    raise InputError(f"unknown backend {settings.backend!r} for the user agent (choose one of: offline, openai)")
