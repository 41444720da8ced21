"""Trials per second of `evaluate`.

    python -m benchmarks.evaluate [--dialogues 10] [--trials 3] [--latency 0.2] [--concurrency 32]

On an offline run of the example database: the offline assistant evaluated (no model at all), then a model
behind the stub server (ClinicModel, every role, in a process of its own) with a fixed latency per request at
the given concurrency. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.throughput import CLINIC, _serve
from graphs.dialogue import build_dialogue_graph
from graphs.run import main as cli
from results.evaluation import read_evaluation, summarize
from runner import event_loop
from runner.evaluate import evaluate
from state.config import Settings


def _measure(run: Path, out: Path, settings: Settings, trials: int, concurrency: int) -> tuple[int, float, float]:
    started = time.perf_counter()
    event_loop.run(evaluate(build_dialogue_graph, run, out, settings, Console(quiet=True), trials=trials,
                            concurrency=concurrency))
    elapsed = time.perf_counter() - started
    summary = summarize(*read_evaluation(out))
    return summary.trials, elapsed, summary.pass_hat[0].value or 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dialogues", type=int, default=10)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    table = Table(title=f"evaluate: {args.dialogues} dialogues x 2 tasks, {args.trials} trials each")
    for column in ("model", "concurrency", "trials", "seconds", "trials/s", "pass^1"):
        table.add_column(column, justify="left" if column == "model" else "right")
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        assert cli(["generate", "--db", str(CLINIC), "--dialogues", str(args.dialogues), "--tasks-per-dialogue", "2",
                    "--seed", "1", "--concurrency", "8", "--out", str(run)]) == 0
        count, elapsed, pass1 = _measure(run, Path(tmp) / "offline", Settings(backend="offline"), args.trials,
                                         args.concurrency)
        table.add_row("offline", str(args.concurrency), str(count), f"{elapsed:.1f}", f"{count / elapsed:.1f}",
                      f"{pass1:.2f}")
        ctx = multiprocessing.get_context("spawn")
        ports, stop, served = ctx.Queue(), ctx.Event(), ctx.Value("q", 0)
        server = ctx.Process(target=_serve, args=(args.latency, ports, stop, served), daemon=True)
        server.start()
        try:
            base_url = f"http://127.0.0.1:{ports.get(timeout=300)}/v1"
            settings = Settings(backend="openai", base_url=base_url, model="clinic-stub", api_key="stub")
            count, elapsed, pass1 = _measure(run, Path(tmp) / "stub", settings, args.trials, args.concurrency)
            table.add_row(f"stub at {args.latency} s ({served.value} requests)", str(args.concurrency), str(count),
                          f"{elapsed:.1f}", f"{count / elapsed:.2f}", f"{pass1:.2f}")
        finally:
            stop.set()
            server.join(timeout=10)
    Console().print(table)


if __name__ == "__main__":
    main()
