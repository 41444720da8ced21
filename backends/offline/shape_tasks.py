"""Offline tasks for tools of any shape (an MCP server's: a path, a query, a list of objects), where no entity
chains through ids: a read task from read tools whose arguments can be filled from what the source shows (its
probed values, the tools' schema examples, the paths its sandbox holds), and a write task as a write followed by
a read that shows it (the written path read back)."""

from __future__ import annotations

import random
import re
from typing import Any

from state.tasks import PlannedCall
from state.tools import Tool

_PATH_WORDS = ("path", "file", "dir", "root", "source", "destination", "repo")
_MOMENTARY = ("info", "stat", "current_time", "now")
_WORDS = ["budget", "garden", "meeting", "travel", "recipes", "reading"]


def _is_path(name: str) -> bool:
    return any(w in name.lower() for w in _PATH_WORDS)


_QUOTED = re.compile(r"'([^'\s]{1,40})'|\"([^\"\s]{1,40})\"")
_FORMATS = {"HH:MM": "09:30", "YYYY-MM-DD": "2024-05-17", "ISO 8601": "2024-05-17T09:30:00"}


def _known(prop: dict[str, Any]) -> list[Any]:
    """The values the schema shows for an argument: its enum, its examples, or those its description quotes
    after "e.g." (or a format it names, as HH:MM)."""
    found = list(prop.get("enum") or prop.get("examples") or [])
    description = str(prop.get("description") or "")
    if not found and "e.g." in description:
        found = [a or b for a, b in _QUOTED.findall(description.split("e.g.", 1)[1].split(")", 1)[0])]
    if not found:
        found = [value for fmt, value in _FORMATS.items() if fmt in description]
    return found


def read_arguments(tool: Tool, rng: random.Random, refused: str = "") -> dict[str, Any] | None:
    """Arguments a read can be called with, each from what the source shows (not a value the plan check just
    refused: `refused` is its feedback); None where one cannot be known."""
    args: dict[str, Any] = {}
    for name in tool.required:
        prop = tool.properties.get(name, {})
        known = [k for k in _known(prop) if not (refused and isinstance(k, str) and k in refused)] \
            or _known(prop)
        if _is_path(name) and known:  # a file to read, a folder to list: as the tool's kind of path wants
            folders = [k for k in known if isinstance(k, str) and ("." not in k.rsplit("/", 1)[-1])]
            files = [k for k in known if k not in folders]
            wants_folder = any(w in tool.name.lower() for w in ("list", "directory", "tree", "dir"))
            known = (folders if wants_folder else files) or known
        known = [k for k in known if not isinstance(k, (list, dict))]
        if known:
            args[name] = rng.choice(known)
        elif prop.get("type") == "boolean":
            args[name] = False
        else:
            return None  # a free text or number the source never showed: a guess would be refused
    return args


def _fresh(name: str, prop: dict[str, Any], rng: random.Random, tag: str) -> Any:
    """A value a write can create: a new file beside the known ones, a new name, a sentence of content."""
    kind = prop.get("type", "string")
    if kind == "array":
        item = prop.get("items") or {"type": "string"}
        return [_fresh(name, item, rng, tag)]
    if kind == "object":
        inner = prop.get("properties") or {}
        return {k: _fresh(k, inner[k], rng, tag) for k in prop.get("required") or list(inner)[:3]}
    if kind in ("integer", "number"):
        return rng.randint(1, 9)
    if kind == "boolean":
        return True
    if prop.get("enum"):
        return rng.choice(prop["enum"])
    topic = _WORDS[int(tag) % len(_WORDS)]
    if _is_path(name):
        known = [k for k in _known(prop) if isinstance(k, str)]
        folders = sorted({k.rsplit("/", 1)[0] for k in known if "/" in k.rstrip("/")} | {k.rstrip("/") for k in known
                                                                                        if k.endswith("/")})
        folder = rng.choice(folders) + "/" if folders else ""
        return f"{folder}{topic}-{tag}.txt"
    if any(w in name.lower() for w in ("name", "title", "key", "id")):
        return f"{topic}-{tag}"
    return f"Notes on {topic} ({tag}): check the plan on Monday."


def _paths_of(arguments: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in arguments.items() if _is_path(k) and isinstance(v, str)}


def shape_subtasks(builder: Any) -> bool:
    """Adds a read subtask and a second one (a write read back, or another read) to an offline task builder
    (TaskAssembly); whether it made two."""
    rng: random.Random = builder.rng
    # what the server said of the refused plan (after "fails:"), not the plan's own arguments
    feedback: str = builder.request.feedback.split(" fails: ", 1)[1] if " fails: " in builder.request.feedback else ""
    tools: list[Tool] = builder.request.tools
    # reads whose answer carries the moment it is read (a file's access time) cannot be told back the same
    reads = [t for t in tools if t.mode == "read" and not any(w in t.name.lower() for w in _MOMENTARY)]
    writes = [t for t in tools if t.mode == "write"]
    readable = [(t, a) for t in reads if (a := read_arguments(t, rng, feedback)) is not None]
    readable += [(t, a) for t in reads  # a second draw of each
                 if t.required and (a := read_arguments(t, rng, feedback)) is not None]
    if not readable:
        return False
    rng.shuffle(readable)
    tool, args = next(((t, a) for t, a in readable if a), readable[0])  # one with arguments says more
    what = ", ".join(f"{k} {v}" for k, v in args.items()) or "what it shows"
    builder._add(f"Use {tool.name} on {what} and report what it shows.",
                 f"could you check {what} for me and tell me what is there?", [[PlannedCall(tool=tool.name,
                                                                                           arguments=args)]], [0])
    tag = f"{rng.randint(100, 999)}"
    rng.shuffle(writes)
    for write in writes:
        values = {n: _fresh(n, write.properties.get(n, {}), rng, tag) for n in write.required}
        if any(isinstance(v, (list, dict)) for v in values.values()):
            continue  # a planned call's arguments are plain values
        if any(_is_path(n) for n in values) and not _paths_of(values):
            continue
        back = _read_back(values, reads, rng)
        if back is None:
            continue
        reader, reader_args = back
        builder.has_write = True
        shown = ", ".join(f"{k} {v!r}" for k, v in values.items())
        builder._add(f"Use {write.name} with {shown}, then confirm with {reader.name} that it shows.",
                     f"please make this change: {shown}. Then read it back to me.",
                     [[PlannedCall(tool=write.name, arguments=values)],
                      [PlannedCall(tool=reader.name, arguments=reader_args)]], [0, 1])
        return True
    first = (tool.name, args)
    others = [(t, a) for t in reads for _ in range(6) if (a := read_arguments(t, rng, feedback)) is not None
              and (t.name, a) != first and (a or t.name != first[0])]
    if not others:
        return False
    tool, args = others[0]
    what = ", ".join(f"{k} {v}" for k, v in args.items()) or "what it shows"
    builder._add(f"Then use {tool.name} on {what} and report it.", f"and what about {what}?",
                 [[PlannedCall(tool=tool.name, arguments=args)]], [0])
    return True


def _read_back(values: dict[str, Any], reads: list[Tool], rng: random.Random) -> tuple[Tool, dict[str, Any]] | None:
    """A read that shows what a write made: one taking the written path again. (A view that needs no argument
    may not show it: a write read back so is not planned, since the plan check would refuse what it cannot see.)"""
    written = _paths_of(values)
    for tool in reads:
        if written and set(tool.required) and set(tool.required) <= set(written) | {
                n for n in tool.required if tool.properties.get(n, {}).get("type") == "boolean"}:
            wants_folder = any(w in tool.name.lower() for w in ("list", "directory", "tree"))
            if not wants_folder:
                return tool, {n: written.get(n, False) for n in tool.required}
    return None
