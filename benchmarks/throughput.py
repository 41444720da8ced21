"""Throughput and framework overhead of the dialogue pipeline.

    python -m benchmarks.throughput [--dialogues N] [--latency 0.2]

Measures, on the example database:
- offline: dialogues per second, and framework time per backend call (everything but the model);
- stub server with a fixed latency, at concurrency 1 and 32: LLM calls per second, how busy the
  model server is kept (achieved calls/s over concurrency / latency), and the framework overhead per
  LLM call (wall time per call at concurrency 1, minus the server's latency).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from backends.registry import backend_for
from graphs.dialogue import build_dialogue_graph
from runner.batch import Batch
from runner.run_folder import RunFolder
from state.config import RunConfig, Settings
from nodes.tool_synthesizer import synthesize_toolset
from environment.introspect import inspect_database
from tests.clinic_model import ClinicModel
from tests.stub_server import StubServer

ROOT = Path(__file__).resolve().parent.parent
CLINIC = ROOT / "examples" / "clinic.sqlite"


def _serve(latency: float, ports: "multiprocessing.Queue[int]", stop: "multiprocessing.Event") -> None:
    """The model server, in a process of its own so it does not compete with the framework for the GIL."""
    with StubServer(ClinicModel(CLINIC), latency=latency, record=False) as server:
        ports.put(server.port)
        stop.wait()


async def _run(settings: Settings, dialogues: int, concurrency: int, tasks: int) -> tuple[float, int, int]:
    """(seconds, LLM calls, dialogues written) for one batch into a throwaway run folder."""
    database = inspect_database(CLINIC)
    toolset, _ = await synthesize_toolset(database, backend_for(Settings(backend="offline")), settings)
    with tempfile.TemporaryDirectory() as tmp:
        folder = RunFolder(Path(tmp))
        config = RunConfig(run_id="bench", source_db=str(CLINIC), dialogues=dialogues, tasks_per_dialogue=tasks,
                           seed=1, concurrency=concurrency, settings=settings.public())
        console = Console(quiet=True)
        started = time.perf_counter()
        await Batch(build_dialogue_graph(), folder, config, settings, toolset.tools, console).run()
        seconds = time.perf_counter() - started
        lines = folder.read_lines("dialogues.jsonl") + folder.read_lines("rejected.jsonl")
        calls = sum(r["metadata"].get("usage", {}).get("llm_calls", 0) for r in lines)
        if settings.backend == "offline":
            calls = sum(sum(1 for m in r["messages"] if m["role"] in ("user", "assistant")) + 2 * tasks
                        for r in lines)  # one backend call per user/assistant message, plus task + judge
        return seconds, calls, len(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dialogues", type=int, default=128)
    parser.add_argument("--latency", type=float, default=0.2)
    args = parser.parse_args()
    os.environ.pop("OPENAI_BASE_URL", None)
    table = Table(title="Dialogue Forge throughput")
    for col in ("backend", "concurrency", "dialogues", "seconds", "dialogues/s", "LLM calls", "calls/s",
                "server busy", "overhead/call"):
        table.add_column(col, justify="right")

    seconds, calls, n = asyncio.run(_run(Settings(backend="offline"), args.dialogues, 8, 2))
    table.add_row("offline", "8", str(n), f"{seconds:.2f}", f"{n / seconds:.1f}", str(calls),
                  f"{calls / seconds:.0f}", "-", f"{1000 * seconds * 8 / calls:.2f} ms*")

    ctx = multiprocessing.get_context("spawn")
    ports, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_serve, args=(args.latency, ports, stop), daemon=True)
    server.start()
    try:
        base_url = f"http://127.0.0.1:{ports.get(timeout=60)}/v1"
        settings = Settings(backend="openai", base_url=base_url, model="stub", http_retries=0)
        per_call_1 = None
        asyncio.run(_run(settings, 2, 2, 1))  # warm-up: imports, connections, caches
        for concurrency, dialogues in ((1, max(8, args.dialogues // 16)), (32, args.dialogues)):
            seconds, calls, n = asyncio.run(_run(settings, dialogues, concurrency, 1))
            rate = calls / seconds
            busy = rate / (concurrency / args.latency)
            overhead = seconds * concurrency / calls - args.latency
            if concurrency == 1:
                per_call_1 = overhead
            table.add_row("stub", str(concurrency), str(n), f"{seconds:.2f}", f"{n / seconds:.2f}", str(calls),
                          f"{rate:.1f}", f"{100 * busy:.1f}%", f"{1000 * overhead:.1f} ms")
    finally:
        stop.set()
        server.join(timeout=10)
    Console().print(table)
    print("* offline: wall time x concurrency / backend calls (all framework, no model).")
    print(f"framework overhead per LLM call at concurrency 1: {1000 * (per_call_1 or 0):.1f} ms")


if __name__ == "__main__":
    main()
