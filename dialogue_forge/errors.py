"""The exceptions the API raises: one type per way a call can fail, each carrying the one line the command
line prints after `error: ` (and the exit code it ends with), so a script and a shell see the same failure."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import ValidationError

from environment.errors import InputError, RunError


class ForgeError(Exception):
    """A call that failed. `str(error)` is one line; the command line prints it as `error: <line>` and exits
    with `exit_code`."""

    exit_code: int = 1


class InvalidInput(ForgeError):
    """Bad input the caller can fix: a path, a source, an option or a file that does not hold what it should."""

    exit_code = 2


class RunFailed(ForgeError):
    """A run that could not finish for a reason other than the input (a full disk, a lost checkpointer)."""


class ModelServerError(ForgeError):
    """The model server failed: it refused a request, or kept replying with what could not be parsed."""


def _model_server_failure(exc: BaseException) -> bool:
    # looked up only where loaded: a command that never reached a model server imports neither
    openai = sys.modules.get("openai")
    replies = sys.modules.get("backends.llm.replies")
    return bool((openai is not None and isinstance(exc, openai.APIError))
                or (replies is not None and isinstance(exc, replies.BackendOutputError)))


def translated(exc: BaseException) -> ForgeError | None:
    """The API's exception for one raised below it (None: not a failure the API names)."""
    if isinstance(exc, ForgeError):
        return exc
    if isinstance(exc, InputError):
        return InvalidInput(str(exc))
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return InvalidInput(f"invalid input: {'.'.join(map(str, first['loc']))}: {first['msg']}")
    if isinstance(exc, RunError):
        return RunFailed(str(exc))
    if isinstance(exc, Exception) and _model_server_failure(exc):
        return ModelServerError(f"the model server: {(str(exc).splitlines() or [''])[0][:300]}")
    return None


@contextmanager
def forge_errors() -> Iterator[None]:
    """Failures from below raised as the API's typed exceptions (anything else passes unchanged)."""
    try:
        yield
    except Exception as exc:
        error = translated(exc)
        if error is None or error is exc:
            raise
        raise error from exc
