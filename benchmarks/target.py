"""The loop from an evaluation to better data, measured: generate → evaluate → generate aimed at the failures.

    python -m benchmarks.target [--dialogues 20] [--trials 3]

On the example database, offline: a run is made and evaluated with a scripted model that fails a known slice
(every write task: it writes wrong values; or every read-only task: it answers without looking), then two new
runs are made with another seed, one as usual and one with `--target` that evaluation. Prints, per model, the
failing slice's pass rate and its share of the tasks: in the evaluated run, in the new untargeted run and in
the targeted one; then how many preference pairs the evaluation gives beside the offline assistant's (same
seed, same users). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

from langchain_core.messages import AIMessage
from rich.console import Console
from rich.table import Table

from backends.offline import OfflineBackend
from backends.protocols import AssistantRequest
from backends.registry import register_backend
from graphs.dialogue import build_dialogue_graph
from graphs.run import main as cli
from runner import event_loop
from runner.evaluate import evaluate
from state.config import Settings
from state.dialogue import Usage

CLINIC = Path(__file__).resolve().parent.parent / "examples" / "clinic.sqlite"


def _writes(request: AssistantRequest) -> bool:
    task = request.reference_task
    return task is not None and any(s.changes_data for s in task.subtasks)


class WriteFumbler(OfflineBackend):
    """The offline assistant, except that every write it makes gets wrong values (the keys stay right)."""

    async def assistant_turn(self, request: AssistantRequest) -> tuple[AIMessage, Usage]:
        message, usage = await super().assistant_turn(request)
        writes = {t.name for t in request.tools if t.mode == "write"}
        calls = [{**c, "args": {k: v if k.endswith("id") or not isinstance(v, (str, int, float)) or
                                isinstance(v, bool) else (v + 7 if isinstance(v, (int, float)) else f"{v} (wrong)")
                                for k, v in c["args"].items()}} if c["name"] in writes else c
                 for c in message.tool_calls]
        return AIMessage(content=message.content, tool_calls=calls), usage


class ReadFumbler(OfflineBackend):
    """The offline assistant on tasks that change data; on read-only ones it answers without looking."""

    async def assistant_turn(self, request: AssistantRequest) -> tuple[AIMessage, Usage]:
        if not _writes(request):
            return AIMessage(content="I could not find anything about that, sorry."), Usage()
        return await super().assistant_turn(request)


MODELS = {"fails writes": ("write", WriteFumbler), "fails read-only tasks": ("read-only", ReadFumbler)}


def _share(run: Path, slice_: str) -> tuple[float, int]:
    tasks = [t for line in (run / "dialogues.jsonl").read_text().splitlines() if line.strip()
             for t in json.loads(line)["metadata"]["tasks"]]
    writing = sum(any(s["changes_data"] for s in t["subtasks"]) for t in tasks)
    count = writing if slice_ == "write" else len(tasks) - writing
    return count / len(tasks) if tasks else 0.0, len(tasks)


def _generate(out: Path, dialogues: int, seed: int, *extra: str) -> float:
    started = time.perf_counter()
    with redirect_stdout(StringIO()):
        assert cli(["generate", "--db", str(CLINIC), "--dialogues", str(dialogues), "--tasks-per-dialogue", "2",
                    "--seed", str(seed), "--concurrency", "8", "--out", str(out), *extra]) == 0
    return time.perf_counter() - started


def _evaluate(run: Path, out: Path, backend: str, trials: int) -> dict:
    event_loop.run(evaluate(build_dialogue_graph, run, out, Settings(backend=backend), Console(quiet=True),
                            trials=trials, seed=1))
    return json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}


def _pass_rate(eval_dir: Path, slice_: str) -> str:
    lines = [json.loads(line) for line in (eval_dir / "trials.jsonl").read_text().splitlines() if line.strip()]
    tasks = {json.loads(line)["task_id"]: json.loads(line) for line in (eval_dir / "tasks.jsonl").read_text()
             .splitlines() if line.strip()}
    mine = [t["reward"] for t in lines if t["reward"] is not None and
            (any(s["changes_data"] for s in tasks[t["task_id"]]["task"]["subtasks"]) == (slice_ == "write"))]
    return f"{sum(mine) / len(mine):.0%} of {len(mine)}" if mine else "-"


def _pairs(offline: Path, other: Path, out: Path) -> str:
    with redirect_stdout(StringIO()):
        code = cli(["export", str(offline), str(other), "--format", "dpo", "--out", str(out)])
    if code != 0:
        return "none"
    manifest = json.loads((out / "export.json").read_text())
    return f"{sum(manifest['splits'].values())} ({manifest['tasks_with_pairs']} tasks)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dialogues", type=int, default=20, help="dialogues per run (2 tasks each)")
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    table = Table(title=f"generate → evaluate → targeted generate ({args.dialogues} dialogues x 2 tasks a run, "
                        f"{args.trials} trials a task)")
    for column in ("model under test", "failing slice", "its pass rate", "share: evaluated run (seed 1)",
                   "share: new run, untargeted (seed 2)", "share: new run, --target (seed 2)", "dpo pairs"):
        table.add_column(column, justify="left" if column in ("model under test", "failing slice") else "right")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        seconds = _generate(root / "run", args.dialogues, 1)
        _generate(root / "plain", args.dialogues, 2)
        offline = root / "eval-offline"
        _evaluate(root / "run", offline, "offline", args.trials)
        for i, (name, (slice_, model)) in enumerate(MODELS.items()):
            backend = f"benchmark-{i}"
            register_backend(backend, model())
            evaluation = root / f"eval-{i}"
            _evaluate(root / "run", evaluation, backend, args.trials)
            aimed = root / f"aimed-{i}"
            _generate(aimed, args.dialogues, 2, "--target", str(evaluation))
            before, _ = _share(root / "run", slice_)
            plain, _ = _share(root / "plain", slice_)
            after, tasks = _share(aimed, slice_)
            table.add_row(name, slice_, _pass_rate(evaluation, slice_), f"{before:.0%}", f"{plain:.0%}",
                          f"{after:.0%} of {tasks}", _pairs(offline, evaluation, root / f"dpo-{i}"))
    Console(width=150).print(table)
    print(f"(one offline run of {args.dialogues} dialogues took {seconds:.1f} s)")


if __name__ == "__main__":
    main()
