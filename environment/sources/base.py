"""One protocol for every kind of tool source (SQLite files, PostgreSQL databases, simulated tools, MCP servers).

Each kind does five things, and nothing outside `environment/sources/` asks which kind it has:
1. `ToolSource.catalog()` lists what is there: a schema to synthesize tools and ground tasks in, or the
   tools the source offers itself.
2. `ToolSource.open(seed)` makes a private per-dialogue `Sandbox`; the source itself is never changed.
3. `Sandbox.call(tool, arguments, context)` executes one call and returns a `CallOutcome`: the
   `ToolResult` and what a replay needs (the dialogue time it ran at).
4. `Sandbox.replay(call, tool)` applies one recorded call onto a fresh sandbox, exactly as it first ran
   (resume, fork, a later `verify`); a replay whose result differs from the recorded one is reported.
5. `Sandbox.snapshot()` returns the sandbox's state, and `Sandbox.diff(before, after)` says what changed
   between two snapshots of it as a `StateDiff` (state/verification.py): per table, the rows inserted,
   deleted and updated. The plan check, the validator and `verify` compare such diffs with a task's goal
   diffs (environment/state_match.py) without knowing the kind.

Two optional abilities make verification cost what a dialogue did, not what the source weighs: a sandbox
that captures its changes (`mark()`, `changes_since(mark)`: the diff since a mark, folded from a log of the
rows its writes touched) and one that rolls back (`savepoint()`, `rollback_to(point)`), so a task's plan is
tried on the dialogue's own sandbox. A kind without them is compared by snapshots on fresh sandboxes.

A dialogue's sandboxes (one per kind its tools use) live in the run's pool (pool.py); its
`DialogueSandboxes.snapshot()` and `diff()` cover every kind at once, and `replay()` rebuilds them from
recorded calls alone: the places the state diff and `verify` hook in. The registry (registry.py) picks a kind
from how a source is named; a kind that sets something up once per run (Postgres: a template database)
does it in the hooks of its kind (kind.py), which run_hooks.py calls.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Protocol

from langchain_core.messages import AnyMessage
from pydantic import BaseModel, ConfigDict, Field

from state.dialogue import ExecutedCall, SimulatedWorld
from state.schema import DatabaseSchema
from state.tools import Tool, ToolResult
from state.verification import StateDiff

# (tool, arguments, messages, reference time, world, rng key) -> a result the backend simulated
Simulator = Callable[[Tool, dict[str, Any], list[AnyMessage], str, SimulatedWorld, str], Awaitable[Any]]


class Catalog(BaseModel):
    """What a source holds: a schema to make tools from and ground tasks in, and/or tools of its own."""

    database: DatabaseSchema | None = Field(None, description="Tables, columns, rows; None for a source of tools.")
    tools: list[Tool] = Field(default_factory=list, description="Tools the source offers as they are (a "
                                                                 "server's list); empty when they are synthesized.")
    notes: list[str] = Field(default_factory=list, description="What was left out while reading it, and why.")


class CallContext(BaseModel):
    """What one call may need from its dialogue: its time, its conversation, its seed and its limits."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    reference_time: str = Field(description="The dialogue's 'now' (ISO 8601), fixed when it started.")
    clock: str = Field(description="The dialogue's time at this call: its reference time, a minute on per call.")
    rng_key: str = Field(description="Seeds every random choice of this call.")
    messages: list[AnyMessage] = Field(default_factory=list, description="The conversation so far.")
    max_rows: int = 20
    max_argument_chars: int = 10_000
    simulate: Simulator | None = Field(None, description="The backend's simulator, for sources that make results up.")


class CallOutcome(BaseModel):
    """One executed call, with what replaying it needs."""

    result: ToolResult
    clock: str | None = Field(None, description="The dialogue time its effect depends on (time-default columns).")
    simulated: bool = Field(False, description="The result was made up from the tool's output schema, not executed.")
    record: dict[str, Any] | None = Field(None, description="What the source keeps of the call beyond its result "
                                                            "(an MCP call's content, isError, latency), for replay.")


class Sandbox(Protocol):
    """A private, per-dialogue copy of a source: calls change it, never the source."""

    async def call(self, tool: Tool, arguments: dict[str, Any], context: CallContext) -> CallOutcome: ...

    def replay(self, call: ExecutedCall, tool: Tool) -> ToolResult | None:
        """Apply one recorded call as it first ran (the same binding, the same clock) and return what it gave
        this time; calls that changed nothing (reads, errors) may be skipped (None)."""

    def snapshot(self) -> Any:
        """The state the state diff compares (e.g. every table's rows), detached from the sandbox."""

    def diff(self, before: Any, after: Any) -> StateDiff:
        """What changed between two snapshots of this sandbox (or of a fresh one and this one)."""

    def close(self) -> None: ...


class CapturingSandbox(Protocol):
    def mark(self) -> Any:
        """Where the sandbox's change log stands now."""

    def changes_since(self, mark: Any | None) -> StateDiff:
        """What changed since a mark (None: since the sandbox was opened): what two snapshots would show."""


class RollbackSandbox(Protocol):
    def savepoint(self) -> Any: ...

    def rollback_to(self, point: Any) -> None:
        """Undo everything since the savepoint (its change log included) and close it."""


def captures(box: Any) -> bool:
    """Whether a sandbox captures its changes as they happen (CapturingSandbox; one may say it cannot, this time,
    by `captures_changes`)."""
    return (callable(getattr(box, "changes_since", None)) and callable(getattr(box, "mark", None))
            and bool(getattr(box, "captures_changes", True)))


def rolls_back(box: Any) -> bool:
    """Whether a sandbox can be rolled back to a savepoint (RollbackSandbox)."""
    return callable(getattr(box, "savepoint", None)) and callable(getattr(box, "rollback_to", None))


class ToolSource(Protocol):
    """One named source of one kind: lists what it holds and makes sandboxes of it."""

    kind: str
    name: str  # how the run named it: a path, a URI; "" for a source that needs no name
    simulated: bool  # its results are made up from the tools' output schemas, not executed

    @property
    def label(self) -> str:
        """A short readable name (a file's stem), for toolset file names and messages."""

    def catalog(self) -> Catalog: ...

    def open(self, seed: int) -> Sandbox: ...

    def check_tool(self, tool: Tool, sandbox: Sandbox) -> str | None:
        """Why a tool cannot run on this source (None when it can); run on a scratch sandbox."""

    def derive_tools(self, database: DatabaseSchema, limit: int) -> list[Tool]:
        """Tools read off the schema alone, to complete a toolset the backend left short (none for a
        source without a schema)."""


PREVIEW_CHARS = 120  # a data view shows the start of long text: enough to ground a task, not a page of it


def preview(value: Any) -> Any:
    """A sample value as a schema's data view shows it (a JSON value already): long text cut short."""
    if isinstance(value, str) and len(value) > PREVIEW_CHARS:
        return value[:PREVIEW_CHARS] + "…"
    return value
