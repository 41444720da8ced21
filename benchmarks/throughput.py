"""Throughput and framework overhead of the dialogue pipeline.

    python -m benchmarks.throughput [--dialogues N] [--latency 0.2]

Measures, on the example database:
- offline: dialogues per second, and framework time per backend call (everything but the model);
- stub server with a fixed latency, at concurrency 1, 32 and 128 (`--levels`), in one process, in `--workers`
  processes and in as many as `--workers auto` chooses: LLM calls per second,
  how busy the model server is kept (achieved calls/s over concurrency / latency), and the framework overhead per
  LLM call (wall time per call at concurrency 1, minus the server's latency).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from backends.registry import backend_for
from graphs.dialogue import build_dialogue_graph
from runner import event_loop
from runner import run_folder as rf
from runner.batch import Batch
from runner.run_folder import RunFolder
from runner.workers import auto_workers
from state.config import RunConfig, RunSource, Settings
from state.sources import SourceRef
from nodes.tool_synthesizer import synthesize_toolset
from environment.sources.registry import open_source
from environment.sources.sqlite.introspect import inspect_database
from tests.clinic_model import ClinicModel
from tests.stub_server import run_async_stub

ROOT = Path(__file__).resolve().parent.parent
SERVED: Any = None  # the stub server's count of answered requests (a shared value), once it runs
CLINIC = ROOT / "examples" / "clinic.sqlite"


def _serve(latency: float, ports: "multiprocessing.Queue[int]", stop: "multiprocessing.Event", served: Any) -> None:
    """The model server, in a process of its own so it does not compete with the framework for the GIL.
    `served` counts the chat completions it answered."""
    model = ClinicModel(CLINIC)

    def counted(request: dict[str, Any]) -> Any:
        with served.get_lock():
            served.value += 1
        return model(request)

    run_async_stub(counted, latency=latency, on_ready=ports.put, should_stop=stop.is_set)


def _cpu() -> float:
    """CPU seconds of this process and of its children that have ended (worker processes; the stub server
    still runs, so it is not counted)."""
    own, ended = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + ended.ru_utime + ended.ru_stime


CPU: dict[tuple[str, int, int], float] = {}  # (run, concurrency, workers) -> CPU seconds per LLM call


async def _run(settings: Settings, dialogues: int, concurrency: int, tasks: int,
               workers: int = 1) -> tuple[float, int, int]:
    """(seconds, LLM calls, dialogues written) for one batch into a throwaway run folder; its CPU per call
    goes to CPU."""
    database = inspect_database(CLINIC)
    toolset, _ = await synthesize_toolset(open_source(str(CLINIC)), database, backend_for(Settings(backend="offline")),
                                          settings)
    with tempfile.TemporaryDirectory() as tmp:
        folder = RunFolder(Path(tmp))
        config = RunConfig(run_id="bench", databases=[RunSource(sources=[SourceRef(kind="sqlite", name=str(CLINIC))])],
                           dialogues=dialogues, tasks_per_dialogue=tasks,
                           seed=1, concurrency=concurrency, workers=workers,
                           settings=settings.public())
        console = Console(quiet=True)
        served_before = SERVED.value if SERVED is not None else 0
        started, cpu = time.perf_counter(), _cpu()
        try:
            await Batch(build_dialogue_graph, folder, config, settings, {rf.TOOLSET: toolset.tools}, console).run()
        except Exception:
            for log in sorted(Path(tmp).glob("worker-*.log")):  # the folder goes with the error: show why
                print(f"--- {log.name}\n{log.read_text()}", file=sys.stderr)
            raise
        seconds, cpu = time.perf_counter() - started, _cpu() - cpu
        lines = folder.read_lines("dialogues.jsonl") + folder.read_lines("rejected.jsonl")
        # every request the server answered, the structured-output probe included: a call is a call
        calls = SERVED.value - served_before if SERVED is not None else 0
        if not settings.uses_model:
            calls = sum(sum(1 for m in r["messages"] if m["role"] in ("user", "assistant")) + 2 * tasks
                        for r in lines)  # one backend call per user/assistant message, plus task + judge
        CPU["graph", concurrency, workers] = cpu / max(1, calls)
        return seconds, calls, len(lines)


async def _raw_http(base_url: str, concurrency: int, per_worker: int, client: str) -> float:
    """Calls per second of a bare HTTP client (httpx, which the openai SDK uses by default, or aiohttp)
    posting a typical request: the ceiling on this machine."""
    from environment.sources.sqlite.derive import derive_tools

    body = {"model": "stub", "messages": [{"role": "user", "content": "Could you look up owner 4?"}] * 6,
            "tools": [t.openai_tool() for t in derive_tools(inspect_database(CLINIC), 40)]}
    url = f"{base_url}/chat/completions"
    if client == "httpx":
        import httpx

        session: Any = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency + 4))

        async def post() -> None:
            response = await session.post(url, json=body)
            response.raise_for_status()
            response.json()
    else:
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency + 4))

        async def post() -> None:
            async with session.post(url, json=body) as response:
                response.raise_for_status()
                await response.json()

    async def worker(n: int) -> None:
        for _ in range(n):
            await post()

    async with session:
        await worker(2)
        started, cpu = time.perf_counter(), _cpu()
        await asyncio.gather(*(worker(per_worker) for _ in range(concurrency)))
        CPU[client, concurrency, 1] = (_cpu() - cpu) / (concurrency * per_worker)
        return concurrency * per_worker / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dialogues", type=int, default=128, help="dialogues for the concurrency-32 runs")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the stub server takes per call")
    parser.add_argument("--levels", type=lambda text: [int(x) for x in text.split(",")], default=[1, 32, 128],
                        help="concurrency levels, comma-separated (default 1,32,128)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the extra rows (one per level above 1)")
    args = parser.parse_args()
    os.environ.pop("OPENAI_BASE_URL", None)
    table = Table(title=f"Dialogue Forge throughput (stub latency {args.latency} s)")
    for col in ("run", "conc.", "workers", "dialogues", "seconds", "dialogues/s", "LLM calls", "calls/s",
                "server busy", "per call − latency"):
        table.add_column(col, justify="right")

    seconds, calls, n = event_loop.run(_run(Settings(backend="offline"), args.dialogues, 8, 2))
    table.add_row("offline", "8", "1", str(n), f"{seconds:.2f}", f"{n / seconds:.1f}", str(calls),
                  f"{calls / seconds:.0f}", "-", "-")

    global SERVED
    ctx = multiprocessing.get_context("spawn")
    ports, stop, SERVED = ctx.Queue(), ctx.Event(), ctx.Value("q", 0)
    server = ctx.Process(target=_serve, args=(args.latency, ports, stop, SERVED), daemon=True)
    server.start()
    per_call: dict[str, float] = {}
    busy: dict[tuple[str, int], float] = {}
    try:
        base_url = f"http://127.0.0.1:{ports.get(timeout=300)}/v1"
        for concurrency in args.levels:
            per_worker = 20 if concurrency == 1 else 10
            for client in ("httpx", "aiohttp"):
                rate = event_loop.run(_raw_http(base_url, concurrency, per_worker, client))
                extra = concurrency / rate - args.latency
                per_call.setdefault(client, extra)
                busy[client, concurrency] = rate / (concurrency / args.latency)
                table.add_row(f"bare {client}", str(concurrency), "-", "-", "-", "-", str(concurrency * per_worker),
                              f"{rate:.1f}", f"{100 * busy[client, concurrency]:.1f}%", f"{1000 * extra:.1f} ms")
        settings = Settings(backend="openai", base_url=base_url, model="stub", http_retries=0)
        event_loop.run(_run(settings, 2, 2, 1))  # warm-up: imports, connections, caches
        # worker processes pay a few seconds of start-up (imports), so they get a longer run to amortize it
        runs = [(c, 1, max(8, args.dialogues // 16) if c == 1 else max(args.dialogues, 2 * c), "")
                for c in args.levels]
        if args.workers > 1:  # one event loop per core
            runs += [(c, args.workers, max(4 * args.dialogues, 4 * c), "") for c in args.levels if c > 1]
        # what `--workers auto` (generate's default) chooses at each level, beside the fixed counts
        runs += [(c, auto_workers(settings, c).workers, max(4 * args.dialogues, 4 * c), " (auto)")
                 for c in args.levels if c > 1]
        if 1 in args.levels:
            # a shorter run beside the concurrency-1 one: the difference is the cost of the extra calls alone,
            # without what a run pays once (opening the checkpointer, compiling the graph, the probe)
            runs.insert(0, (1, 1, max(2, runs[0][2] // 4), ""))
        short: tuple[float, int] | None = None
        for concurrency, workers, dialogues, auto in runs:
            seconds, calls, n = event_loop.run(_run(settings, dialogues, concurrency, 1, workers))
            if concurrency == 1 and short is None:
                short = (seconds, calls)
                table.add_row("dialogues", "1", "1", str(n), f"{seconds:.2f}", f"{n / seconds:.2f}", str(calls),
                              f"{calls / seconds:.1f}", "-", "(the shorter run)")
                continue
            if concurrency == 1 and short is not None:
                per_call["marginal"] = (seconds - short[0]) / (calls - short[1]) - args.latency
            rate = calls / seconds
            extra = concurrency / rate - args.latency
            per_call.setdefault("graph", extra)
            kind = "auto" if auto else "graph" if workers == 1 else "workers"
            busy[kind, concurrency] = rate / (concurrency / args.latency)
            table.add_row("dialogues", str(concurrency), f"{workers}{auto}", str(n), f"{seconds:.2f}", f"{n / seconds:.2f}",
                          str(calls), f"{rate:.1f}", f"{100 * rate / (concurrency / args.latency):.1f}%",
                          f"{1000 * extra:.1f} ms")
    finally:
        stop.set()
        server.join(timeout=10)
    Console(width=150).print(table)
    for concurrency in args.levels:
        if concurrency > 1:
            for client in ("httpx", "aiohttp"):
                ratio = busy["graph", concurrency] / busy[client, concurrency]
                print(f"at concurrency {concurrency} the stub is kept {ratio:.2f} as busy as by a bare {client} client")
            if ("workers", concurrency) in busy:
                best = max(busy["httpx", concurrency], busy["aiohttp", concurrency])
                print(f"  with {args.workers} worker processes: {busy['workers', concurrency] / best:.2f} "
                      f"of the better bare client")
            if ("auto", concurrency) in busy:
                best = max(busy["httpx", concurrency], busy["aiohttp", concurrency])
                print(f"  with --workers auto ({auto_workers(settings, concurrency).line(True)}): "
                      f"{busy['auto', concurrency] / best:.2f} of the better bare client")
    for concurrency in args.levels:
        bare = "; ".join(f"bare {c} {1000 * CPU[c, concurrency, 1]:.2f} ms" for c in ("httpx", "aiohttp")
                         if (c, concurrency, 1) in CPU)
        for (kind, level, workers), seconds in sorted(CPU.items()):
            if kind == "graph" and level == concurrency:
                print(f"CPU per LLM call at concurrency {concurrency}, {workers} process{'es' if workers > 1 else ''}: "
                      f"{1000 * seconds:.2f} ms (the whole run: graph, checkpoints, sandboxes, HTTP); {bare}")
    if 1 not in args.levels:
        return
    for client in ("httpx", "aiohttp"):
        print(f"framework overhead per LLM call at concurrency 1: {1000 * per_call['graph']:.1f} ms over the latency, "
              f"{1000 * (per_call['graph'] - per_call[client]):.1f} ms over a bare {client} client "
              f"(whose own {1000 * per_call[client]:.1f} ms are the stub server, loopback and wake-up costs); "
              f"per extra call (the two runs' difference): {1000 * per_call['marginal']:.1f} ms over the latency, "
              f"{1000 * (per_call['marginal'] - per_call[client]):.1f} ms over the bare client")


if __name__ == "__main__":
    main()
