"""Which backend runs: chosen by name from the settings, never by the nodes."""

from __future__ import annotations

from backends.base import Backend
from backends.offline import OfflineBackend
from environment.errors import InputError
from state.config import Settings

_CUSTOM: dict[str, Backend] = {}
_BUILT: dict[tuple, Backend] = {}


def register_backend(name: str, backend: Backend) -> None:
    """Make a backend instance (e.g. one around a scripted chat model) available by name."""
    _CUSTOM[name] = backend


def backend_for(settings: Settings) -> Backend:
    if settings.backend in _CUSTOM:
        return _CUSTOM[settings.backend]
    if settings.backend == "offline":
        return _BUILT.setdefault(("offline",), OfflineBackend())
    if settings.backend == "openai":
        from backends.openai import OpenAIBackend

        key = ("openai", settings.model_dump_json())
        if key not in _BUILT:
            _BUILT[key] = OpenAIBackend(settings)
        return _BUILT[key]
    known = ", ".join(["offline", "openai", *_CUSTOM])
    raise InputError(f"unknown backend {settings.backend!r} (choose one of: {known})")
