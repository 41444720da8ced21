"""MCP servers as a kind of tool source: `mcp://PATH` names a servers file (`generate --mcp PATH` does it).

The catalog is the servers' tools (each read or write by its annotations, given the entity and kind the
offline task writer chains calls through, and examples from the probed data for its text arguments); the
tools a model cannot use are notes. A sandbox is one `McpDialogue`: its servers started once on fresh copies
of the declared files, kept for the dialogue's life, stopped on close. Each call's MCP record (content,
structured content, isError, latency) is kept beside its result; a replay re-runs the recorded writes and
returns what they gave this time, which the pool compares with what they gave first. A server that does not
start, crashes or hangs raises `McpServerFailure`, which ends the dialogue as rejected with its reason.
"""

from __future__ import annotations

import ast
import itertools
import json
import threading
from pathlib import Path
from typing import Any

from environment.sources.base import CallContext, CallOutcome, Catalog
from environment.sources.kind import SourceKind
from environment.sources.mcp import loop
from environment.sources.mcp.config import load_mcp_config
from environment.sources.mcp.diff import diff, view_records
from environment.sources.mcp.files import files_state
from environment.sources.mcp.paths import sandbox_paths
from environment.sources.mcp.records import McpServerFailure, to_tool_result
from environment.sources.mcp.session import McpDialogue, McpSource
from environment.sources.mcp.toolset import McpToolListing
from state.config import Settings
from state.dialogue import ExecutedCall
from state.mcp import McpCallRecord
from state.tools import Tool, ToolResult, is_path_argument
from state.verification import StateDiff

SCHEME = "mcp://"
_EXAMPLES = 6
_QUERY_ARGUMENTS = ("query", "q", "search", "term", "keyword", "text")


def mcp_source_name(path: str | Path) -> str:
    """How a run names a servers file as a source."""
    return f"{SCHEME}{Path(path).resolve()}"


def _entity(tool: Tool, remote: str) -> str:
    ids = [p[:-3] for p in tool.required if p.endswith("_id")]
    if ids:
        return ids[0]
    last = remote.lower().split("_")[-1]
    return last[:-1] if last.endswith("s") and len(last) > 3 else last


def _classified(tool: Tool, remote: str) -> Tool:
    """The entity a tool works on and its kind, read off its name and arguments: what the offline writer of
    tasks chains calls through (find, look up, change)."""
    entity = _entity(tool, remote)
    keyed = f"{entity}_id" in tool.required
    if tool.mode == "read":
        kind = "lookup" if keyed else "search"
    else:
        kind = "update" if keyed or f"{entity}_id" in tool.properties else "insert"
    return tool.model_copy(update={"table": entity, "kind": kind})


def _with_examples(tool: Tool, rows: list[dict[str, Any]]) -> Tool:
    """Text arguments named like a field of the probed data get a few of its values as JSON Schema examples:
    tasks (offline or by a model) then ask for what the servers hold."""
    properties = tool.properties
    changed = False
    for name, prop in properties.items():
        if prop.get("examples") or "string" not in str(prop.get("type", prop.get("anyOf", ""))):
            continue
        # a field of that name, or the last word of it (table_name: name); a free query: the records' names
        fields = [name, name.rsplit("_", 1)[-1]] + (["name", "title"] if name in _QUERY_ARGUMENTS else [])
        field = next((f for f in fields if any(isinstance(r.get(f), (str, int)) for r in rows)), name)
        seen = sorted({str(r[field]) for r in rows if isinstance(r.get(field), (str, int)) and str(r[field]).strip()})
        if seen:
            properties[name] = {**prop, "examples": seen[:_EXAMPLES]}
            changed = True
    if not changed:
        return tool
    return tool.model_copy(update={"parameters": {**tool.parameters, "properties": properties}})


def _with_paths(tool: Tool, paths: list[str]) -> Tool:
    """Path arguments of a server that works on its sandbox's files get the paths there as JSON Schema examples
    (files first): tasks and the assistant name files that exist, relative to the sandbox."""
    if not paths:
        return tool
    files, folders = [p for p in paths if not p.endswith("/")], [p.rstrip("/") for p in paths if p.endswith("/")]
    properties = dict(tool.properties)
    for name, prop in tool.properties.items():
        if is_path_argument(name) and prop.get("type") == "string" and not prop.get("examples"):
            folder_like = any(w in name.lower() for w in ("dir", "root", "repo"))
            shown = (folders + files) if folder_like else (files + folders)
            properties[name] = {**prop, "examples": shown[:_EXAMPLES],
                                "description": (prop.get("description", "") + " (relative to the service's root, "
                                                "for example " + repr(shown[0]) + ")").strip()}
    if properties == tool.properties:
        return tool
    return tool.model_copy(update={"parameters": {**tool.parameters, "properties": properties}})


def _shown(record: McpCallRecord) -> Any:
    """What a probed view shows: its structured content, else its text read as JSON or as a Python literal
    (servers that print their rows, as mcp-server-sqlite does)."""
    if record.structured_content is not None:
        return record.structured_content
    text = "".join(str(block.get("text", "")) for block in record.content or [] if isinstance(block, dict))
    for read in (json.loads, ast.literal_eval):
        try:
            return read(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return None


def _outcome_record(outcome: Any) -> dict[str, Any]:
    return outcome.record.model_dump(mode="json", exclude_defaults=True)


class McpSandbox:
    """One dialogue's servers (an McpDialogue), used through the protocol from any thread or loop."""

    def __init__(self, source: McpSource, seed: int, views: tuple[str, ...]) -> None:
        self.dialogue: McpDialogue = loop.wait(source.open_dialogue(f"s{seed}"))
        self.views = views
        self.filed = [name for name in source.per_dialogue if source.config.servers[name].sandbox.paths]

    async def call(self, tool: Tool, arguments: dict[str, Any], context: CallContext) -> CallOutcome:
        outcome = await loop.gather(self.dialogue.call(tool.name, arguments))
        return CallOutcome(result=outcome.result, record=_outcome_record(outcome))

    def replay(self, call: ExecutedCall, tool: Tool) -> ToolResult | None:
        recorded = McpCallRecord.model_validate(call.record) if call.record else None
        if call.mode != "write" or recorded is None or not recorded.reached_server or recorded.failure:
            return None  # reads change nothing; a call refused before the server never ran there
        again = loop.wait(self.dialogue.call(call.tool, call.arguments)).record
        return to_tool_result(again)

    def snapshot(self) -> dict[str, Any]:
        """What every read-only tool that needs no argument shows now (`McpDialogue.probe`), by tool, and what
        the files each server keeps its state in hold (files.py), by server: the servers' state as far as it
        can be read. The state diff compares two of these."""
        probed = loop.wait(self.dialogue.probe(self.views))  # only views that answered the catalog's probe
        views: dict[str, Any] = {name: r.structured_content if r.structured_content is not None else r.content
                                 for name, r in sorted(probed.items())}
        for server in self.filed:
            for table, records in files_state(self.dialogue.sandbox_of(server)).items():
                views[f"{server}:{table}"] = records
        return views

    def diff(self, before: dict[str, Any], after: dict[str, Any]) -> StateDiff:
        return diff(before, after)

    def close(self) -> None:
        loop.later(self.dialogue.close())


class McpToolSource:
    kind = "mcp"
    simulated = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = Path(name.removeprefix(SCHEME))
        self.config = load_mcp_config(self.path)
        self.label = self.path.parent.name if self.path.stem == "servers" else self.path.stem
        self.mcp = McpSource.from_settings(self.config, Settings())
        self._catalog: Catalog | None = None
        self.views: tuple[str, ...] = ()
        loop.at_exit(self.mcp.close)

    def recordable(self) -> dict[str, Any]:
        return self.config.recordable()

    def catalog(self) -> Catalog:
        if self._catalog is None:
            listing, probed, problem = loop.wait(self._list_and_probe())
            self.views = tuple(probed)  # the views that answered: what a sandbox's snapshot reads
            rows = list(itertools.chain.from_iterable(view_records(_shown(r)) for r in probed.values()))
            paths = {name: self._sandbox_paths(name) for name in self.mcp.per_dialogue}
            tools = [_with_paths(_with_examples(_classified(t.tool, t.remote_name), rows), paths.get(t.server, []))
                     for t in listing.tools]
            notes = [f"left out {d.name}: {d.reason}" for d in listing.dropped] + ([problem] if problem else [])
            notes += self._unchecked(listing, probed)
            self._catalog = Catalog(tools=tools, notes=notes)
        return self._catalog

    async def _list_and_probe(self) -> tuple[McpToolListing, dict[str, McpCallRecord], str]:
        async with self.mcp.dialogue("catalog") as scratch:  # a scratch dialogue: fresh copies, stopped after
            probed: dict[str, McpCallRecord] = {}
            for name in scratch.probe_names():
                try:
                    probed.update(await scratch.probe([name]))
                except McpServerFailure as failure:  # the tools stand; the views after it are not probed
                    return scratch.tools or McpToolListing(), probed, \
                        f"probing the read-only tools failed at {name}: {failure.reason}"
            return scratch.tools or McpToolListing(), probed, ""

    def _unchecked(self, listing: McpToolListing, probed: dict[str, McpCallRecord]) -> list[str]:
        """Servers that write but whose state nothing shows (no declared files, no view without arguments),
        said once as the run starts: the state check cannot see what their writes did."""
        viewed = {t.server for t in listing.tools if t.name in probed}
        writers = sorted({t.server for t in listing.tools if t.tool.mode == "write"})
        return [f"server {name}: unchecked (no sandbox files declared and no read-only tool without arguments "
                f"shows its state): a write to it cannot be verified by state, only by the facts and the judge"
                for name in writers if name not in viewed and not self.config.servers[name].sandbox.paths]

    def _sandbox_paths(self, server: str) -> list[str]:
        """The paths a dialogue's sandbox of this server holds, relative to it (its copies, freshly made)."""
        found: list[str] = []
        for relative in self.config.servers[server].sandbox.paths:
            source, name = self.config.path(relative), Path(relative).name
            found.append(name + ("/" if source.is_dir() else ""))
            found.extend(f"{name}/{inner}" for inner in sandbox_paths(source))
        return found

    def open(self, seed: int) -> McpSandbox:
        self.catalog()  # which views answer is known from the catalog's probe
        return McpSandbox(self.mcp, seed, self.views)

    def check_tool(self, tool: Tool, sandbox: Any) -> str | None:
        offered = {t.name for t in self.catalog().tools}
        return None if tool.name in offered else f"no MCP server of {self.path.name} offers {tool.name}"

    def derive_tools(self, database: Any, limit: int) -> list[Tool]:
        return []  # no schema: the servers' tools are all there is


class McpKind(SourceKind):
    kind = "mcp"
    named = True

    def __init__(self) -> None:
        self._sources: dict[str, McpToolSource] = {}
        self._lock = threading.Lock()

    def claims(self, name: str) -> bool:
        return name.startswith(SCHEME)

    def expand(self, arg: str) -> list[str]:
        return [mcp_source_name(arg.removeprefix(SCHEME))]

    def open(self, name: str) -> McpToolSource:
        """One source per servers file and process: its shared servers and its toolset are the run's."""
        name = mcp_source_name(name.removeprefix(SCHEME))
        with self._lock:
            if name not in self._sources:
                self._sources[name] = McpToolSource(name)
            return self._sources[name]

    def recordable(self, name: str) -> dict[str, Any]:
        """The servers file as the run folder keeps it (secrets masked)."""
        return self.open(name).recordable()
