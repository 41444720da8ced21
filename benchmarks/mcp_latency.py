"""What an MCP server costs a dialogue: start (process + initialize + tools/list), per-call latency over stdio,
replay and stop, for the bundled library server (the SDK's FastMCP) and the hand-written test server.

    python -m benchmarks.mcp_latency [--dialogues N] [--calls K]

Each dialogue starts its own server on fresh copies, makes K calls (reads, and a write every fourth),
replays its writes on a second fresh server, and stops both. Prints medians and 90th percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from environment.sources.mcp import McpSource, load_mcp_config, parse_mcp_config  # noqa: E402


def _p90(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.9) - 1)]


async def _measure(source: McpSource, dialogues: int, calls: int, read: tuple[str, dict], write: tuple[str, dict],
                   undo: Callable[[Any], tuple[str, dict]] | None) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"start (s)": [], "read call (ms)": [], "write call (ms)": [],
                                       "replay per write (ms)": [], "stop (s)": []}
    for i in range(dialogues):
        began = time.perf_counter()
        dialogue = await source.open_dialogue(f"bench-{i}")
        figures["start (s)"].append(time.perf_counter() - began)
        records = []
        for k in range(calls):
            name, args = write if k % 4 == 3 else read
            outcome = await dialogue.call(name, args)
            records.append(outcome.record)
            figures["write call (ms)" if k % 4 == 3 else "read call (ms)"].append(outcome.record.latency_ms)
            if k % 4 == 3 and undo is not None:  # the write undone, so the next one succeeds too
                records.append((await dialogue.call(*undo(outcome.record.structured_content))).record)
        began = time.perf_counter()
        await dialogue.close()
        figures["stop (s)"].append(time.perf_counter() - began)
        resumed = await source.open_dialogue(f"bench-{i}-replay")
        began = time.perf_counter()
        report = await resumed.replay(records)
        if report.replayed:
            figures["replay per write (ms)"].append((time.perf_counter() - began) * 1000 / report.replayed)
        assert not report.diverged, report.divergences[0].describe()
        await resumed.close()
    return figures


async def _main(dialogues: int, calls: int) -> None:
    console = Console()
    with tempfile.TemporaryDirectory() as scratch:
        library = load_mcp_config(ROOT / "examples" / "mcp" / "servers.json")
        faults = parse_mcp_config({"mcpServers": {"faults": {"command": "python", "args": [
            str(ROOT / "tests" / "mcp_fault_server.py"), "--counter", str(Path(scratch) / "counter")]}}}, scratch)
        cases = [
            ("library (FastMCP)", library, ("library__get_book", {"book_id": 2}),
             ("library__lend_book", {"book_id": 1, "borrower": "Ann"}), lambda loan: ("library__return_book", {"loan_id": loan["loan_id"]})),
            ("hand-written JSON-RPC", faults, ("faults__echo", {"text": "hello"}), ("faults__echo", {"text": "w"}),
             None),
        ]
        table = Table(title=f"MCP over stdio: {dialogues} dialogues x {calls} calls each")
        table.add_column("server")
        table.add_column("figure")
        table.add_column("median", justify="right")
        table.add_column("p90", justify="right")
        for label, config, read, write, undo in cases:
            async with McpSource(config, work_dir=Path(scratch) / label.split()[0]) as source:
                figures = await _measure(source, dialogues, calls, read, write, undo)
            for figure, values in figures.items():
                if values:
                    table.add_row(label, figure, f"{statistics.median(values):.3f}", f"{_p90(values):.3f}")
        console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dialogues", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(_main(args.dialogues, args.calls))


if __name__ == "__main__":
    main()
