"""Re-run a dataset line's tool calls in order on a fresh copy of its database, at the times they ran."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from environment.sources.sqlite.sandbox import Sandbox
from state.tools import Tool


def replay(record: dict[str, Any], tools: dict[str, Tool], database: Path) -> int:
    """Assert every executed call of the line gives exactly its recorded result; return how many ran."""
    results = {m["tool_call_id"]: m["content"] for m in record["messages"] if m["role"] == "tool"}
    clocks = {c["id"]: c.get("clock") for c in record["metadata"].get("tool_calls", [])}
    box = Sandbox(str(database))
    checked = 0
    try:
        for m in record["messages"]:
            for call in m.get("tool_calls") or []:
                name = call["function"]["name"]
                if name not in tools or tools[name].source != "sqlite":
                    continue
                replayed = box.run(tools[name], json.loads(call["function"]["arguments"]), clock=clocks.get(call["id"]))
                assert json.dumps(replayed.to_content(), ensure_ascii=False, default=str) == results[call["id"]], \
                    f"{record['id']}: {name} did not replay"
                checked += 1
    finally:
        box.close()
    return checked


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []
