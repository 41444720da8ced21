"""An MCP server that misbehaves on purpose, for the MCP source's tests.

Speaks MCP's stdio JSON-RPC by hand (no SDK import, so it starts in a few milliseconds). Tools:
`echo` (read: structured {"text"}), `fail` (answers isError), `hang` (never answers), `ticket` (a
write whose result is a serial kept in --counter, a file outside any sandbox, so it changes from one
process to the next: a divergent server), `broken` (an input schema no model can use; listed only
with --broken-tool). Flags: --no-start (writes a reason to stderr and exits before initialize),
--crash-on N (exits on its Nth tools/call), --log PATH (start, call and stop events as JSON lines).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

TOOLS: list[dict[str, Any]] = [
    {"name": "echo", "description": "Echo a text back.", "annotations": {"readOnlyHint": True},
     "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
     "outputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
    {"name": "fail", "description": "Always fails with a tool error.", "annotations": {"readOnlyHint": True},
     "inputSchema": {"type": "object", "properties": {}}},
    {"name": "hang", "description": "Never answers.", "annotations": {"readOnlyHint": True},
     "inputSchema": {"type": "object", "properties": {}}},
    {"name": "ticket", "description": "Take a ticket (a write whose number is not reproducible).",
     "inputSchema": {"type": "object", "properties": {"queue": {"type": "string"}}, "required": ["queue"]},
     "outputSchema": {"type": "object", "properties": {"ticket": {"type": "integer"}}}},
]
BROKEN = {"name": "broken", "description": "Its schema is not an object.", "inputSchema": {"type": "array"}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-start", action="store_true")
    parser.add_argument("--crash-on", type=int, default=0)
    parser.add_argument("--counter", default="")
    parser.add_argument("--log", default="")
    parser.add_argument("--broken-tool", action="store_true")
    args = parser.parse_args()

    def log(event: dict[str, Any]) -> None:
        if args.log:
            with open(args.log, "a", encoding="utf-8") as f:
                f.write(json.dumps({"pid": os.getpid(), **event}) + "\n")

    if args.no_start:
        sys.stderr.write("fault server: cannot open its database (refusing to start)\n")
        sys.exit(3)
    log({"event": "start"})
    tools = TOOLS + ([BROKEN] if args.broken_tool else [])
    calls = 0

    def send(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        method, rid, params = request.get("method"), request.get("id"), request.get("params") or {}
        if rid is None:
            continue  # a notification
        if method == "initialize":
            send({"jsonrpc": "2.0", "id": rid, "result": {
                "protocolVersion": params.get("protocolVersion", "2025-06-18"),
                "capabilities": {"tools": {}}, "serverInfo": {"name": "faults", "version": "1"}}})
        elif method == "tools/list":
            send({"jsonrpc": "2.0", "id": rid, "result": {"tools": tools}})
        elif method == "tools/call":
            calls += 1
            name, arguments = params.get("name"), params.get("arguments") or {}
            log({"event": "call", "tool": name, "arguments": arguments})
            if calls == args.crash_on:
                sys.stderr.write(f"fault server: segmentation fault on call {calls}\n")
                sys.stderr.flush()
                os._exit(139)
            if name == "echo":
                result = {"content": [{"type": "text", "text": json.dumps({"text": arguments["text"]})}],
                          "structuredContent": {"text": arguments["text"]}}
            elif name == "fail":
                result = {"content": [{"type": "text", "text": "the archive is closed today"}], "isError": True}
            elif name == "hang":
                time.sleep(3600)
                continue
            elif name == "ticket":
                counter = Path(args.counter)
                number = int(counter.read_text() or 0) + 1 if counter.exists() else 1
                counter.write_text(str(number))
                result = {"content": [{"type": "text", "text": json.dumps({"ticket": number})}],
                          "structuredContent": {"ticket": number}}
            else:
                send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32602, "message": f"Unknown tool: {name}"}})
                continue
            send({"jsonrpc": "2.0", "id": rid, "result": result})
        else:
            send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": f"no method {method}"}})
    log({"event": "stop"})


if __name__ == "__main__":
    main()
