"""Helpers of the MCP source's tests: an event loop like the commands', the servers' own logs, configs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Coroutine, TypeVar

from environment.sources.mcp import parse_mcp_config
from tests.conftest import ROOT

T = TypeVar("T")
EXAMPLE = ROOT / "examples" / "mcp"
FAULTS = ROOT / "tests" / "mcp_fault_server.py"


def run(main: Coroutine[Any, Any, T]) -> T:
    """On uvloop where installed, as every command runs (the SDK's subprocesses must work on it)."""
    try:
        import uvloop
        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def by_pid(log: Path) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for event in events(log):
        out.setdefault(event["pid"], []).append(event)
    return out


def fault_config(tmp_path: Path, *flags: str, shared: bool = False):
    log = tmp_path / "faults.log"
    server = {"command": "python", "args": [str(FAULTS), "--log", str(log), *flags], "shared": shared}
    return parse_mcp_config({"mcpServers": {"faults": server}}, tmp_path), log
