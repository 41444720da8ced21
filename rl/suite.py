"""A run's verified tasks as RL environments: `from_run(RUN_DIR, split="train")`.

The tasks are evaluate's (runner/evaluate.select_tasks: every task of a valid dialogue with a goal diff and
facts, with the conversation and calls before it); the split is recorded in the run folder (rl/splits.py).
The environments own the run scope their sources set up per run (a Postgres template), under a fixed id, so a
training process killed mid-episode leaves nothing the next start does not drop first.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from pathlib import Path
from typing import Any

from backends.protocols import Backend
from backends.registry import backend_for
from environment.errors import InputError
from environment.sources.run_hooks import sources_for_run
from rl.episode import Episode
from rl.splits import SplitBy, SplitName, SplitRecord, recorded_split
from runner import layout
from runner.evaluate import select_tasks
from state.benchmark import BenchmarkTask
from state.config import Settings
from state.tools import Tool

WORKS_ON = "RL environments are made from dialogue runs (the output of generate), not this folder"

_scopes_lock = threading.Lock()
_scopes: dict[str, tuple[contextlib.ExitStack, int]] = {}  # run id -> its scope in this process, and its users


def _enter_scope(run_id: str, names: list[str]) -> None:
    """The run's source scope in this process, entered by its first environments (which drop what a killed
    process left: leftovers of an earlier start) and shared by the later ones (a train and a test split)."""
    with _scopes_lock:
        if run_id in _scopes:
            stack, users = _scopes[run_id]
            _scopes[run_id] = (stack, users + 1)
            return
        stack = contextlib.ExitStack()
        stack.enter_context(sources_for_run(names, f"rl-{run_id}", resuming=True))
        _scopes[run_id] = (stack, 1)


def _leave_scope(run_id: str) -> None:
    with _scopes_lock:
        if run_id not in _scopes:
            return
        stack, users = _scopes.pop(run_id)
        if users > 1:
            _scopes[run_id] = (stack, users - 1)
            return
    stack.close()


class Environments:
    """The tasks of one split of a run, and what every episode over them shares (backend, tools, settings)."""

    def __init__(self, run_dir: Path, split: SplitName, by: SplitBy, test_fraction: float, seed: int,
                 settings: Settings, judge: bool) -> None:
        if split not in ("train", "test", "all"):
            raise InputError(f"unknown split {split!r}: choose train, test or all")
        self.run_dir = Path(run_dir)
        every, config = select_tasks(self.run_dir, None, [], 0, works_on=WORKS_ON)
        self.record: SplitRecord = recorded_split(self.run_dir, every, by, test_fraction, seed)
        self.split = split
        self._all = {t.task_id: t for t in every}
        self._in_split = set(self.record.ids(split))
        self.tasks: list[BenchmarkTask] = [t for t in every if t.task_id in self._in_split]
        kinds = list(dict.fromkeys([*(config.settings.get("source_kinds") or []), *settings.source_kinds]))
        self.settings = settings.model_copy(update={"source_kinds": kinds})
        self.backend: Backend = backend_for(self.settings)
        self.judge = judge
        self.run_id = config.run_id
        self._toolsets: dict[str, dict[str, Tool]] = {}
        self._lock = threading.Lock()
        # one scope id per run: a killed trainer's leftovers (Postgres clones) are dropped at the next start
        _enter_scope(self.run_id, sorted({ref.name for t in every for ref in t.sources}))
        self._finalizer = weakref.finalize(self, _leave_scope, self.run_id)  # at close, collection or exit

    @property
    def task_ids(self) -> list[str]:
        return [t.task_id for t in self.tasks]

    @property
    def databases(self) -> list[str]:
        """The split's databases (short names), in run order: one TRL environment each."""
        return list(dict.fromkeys(t.database for t in self.tasks))

    def task(self, task_id: str) -> BenchmarkTask:
        """A task of this split, or one clear line why not (not in the run; in the other split)."""
        if task_id in self._in_split:
            return self._all[task_id]
        if task_id in self._all:
            raise InputError(f"task {task_id!r} is in another split of {self.run_dir} than {self.split!r}: "
                             f"an episode never crosses the split")
        example = next(iter(self._all))
        raise InputError(f"no task {task_id!r} in {self.run_dir} (task ids look like {example})")

    def tools_of(self, task: BenchmarkTask) -> dict[str, Tool]:
        """The tools of the task's toolset, by name (each toolset file read once)."""
        with self._lock:
            if task.toolset not in self._toolsets:
                path = self.run_dir / task.toolset
                self._toolsets[task.toolset] = {t.name: t for t in layout.load_toolset(path)}
            return self._toolsets[task.toolset]

    def toolset_of_database(self, database: str) -> list[Tool]:
        task = next((t for t in self.tasks if t.database == database), None)
        if task is None:
            raise InputError(f"no task of database {database!r} in the {self.split} split of {self.run_dir}")
        return list(self.tools_of(task).values())

    def episode(self) -> Episode:
        """A new environment instance; reset it to a task before use."""
        return Episode(self)

    def trl_dataset(self, **options: Any):
        from rl.trl import dataset

        return dataset(self, **options)

    def trl_environment_factory(self):
        from rl.trl import environment_factory

        return environment_factory(self)

    def close(self) -> None:
        """Leave the run's scope; the last environments of the run in this process end it (the per-run
        resources of its sources go)."""
        self._finalizer()


def from_run(run_dir: str | Path, split: SplitName = "train", by: SplitBy = "task", test_fraction: float = 0.2,
             seed: int = 0, settings: Settings | None = None, judge: bool = False) -> Environments:
    """RL environments over the verified tasks of a finished run.

    Args:
        run_dir: a run folder made by `generate`.
        split: "train", "test" or "all" of the run's recorded split (made and recorded on first use).
        by: "task" (whole dialogues to one side) or "database" (whole databases to one side).
        test_fraction: the share of dialogues (or databases) held out for the test split.
        seed: seeds which dialogues (or databases) are held out.
        settings: the backend the user simulator runs on (offline by default; any OpenAI-compatible server with
            per-role models, as for `generate`) and the turn limits.
        judge: score the judge's non-state rubric items too (an LLM call per reward on the openai backend).

    Raises:
        InputError: not a dialogue run, no verified task in it, or a split other than the recorded one.
    """
    return Environments(Path(run_dir), split, by, test_fraction, seed, settings or Settings(), judge)
