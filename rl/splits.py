"""Train / test splits of a run's tasks that do not leak, recorded in the run folder so every process agrees.

A dialogue's later task carries its earlier tasks' conversation (and their solutions), so tasks are split by
the dialogue they come from, never one by one; `by="database"` keeps every task of a database in one split
(a test of databases never seen in training). The split is a pure function of the task ids, the fraction and
the seed, and it is written once to `rl_splits.json`; a later call asking for another split is refused rather
than silently training on a different one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from environment.errors import InputError
from state.benchmark import BenchmarkTask
from state.sources import joined_name

SPLITS_FILE = "rl_splits.json"
SplitBy = Literal["task", "database"]
SplitName = Literal["train", "test", "all"]


class SplitRecord(BaseModel):
    """rl_splits.json of a run folder."""

    by: SplitBy = Field("task", description="task: whole dialogues go to one side; database: whole databases.")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="The share of dialogues (or databases) held out.")
    seed: int = Field(0, description="Seeds which dialogues (or databases) are held out.")
    train: list[str] = Field(default_factory=list, description="Task ids of the training split, in run order.")
    test: list[str] = Field(default_factory=list, description="Task ids of the test split, in run order.")

    def ids(self, split: SplitName) -> list[str]:
        return self.train + self.test if split == "all" else getattr(self, split)


def _draw(key: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def make_split(tasks: list[BenchmarkTask], by: SplitBy, test_fraction: float, seed: int) -> SplitRecord:
    """Hold out groups (dialogues or databases) whose seeded draw falls under the fraction; at least one group
    on each side where there are two or more."""
    group_of = (lambda t: t.dialogue_id) if by == "task" else (lambda t: t.database or joined_name(t.sources))
    groups = list(dict.fromkeys(group_of(t) for t in tasks))
    if by == "database" and len(groups) < 2:
        raise InputError(f"a split by database needs a run over two or more databases; this one has "
                         f"{len(groups)} ({', '.join(groups) or 'none'}): split by task instead")
    ranked = sorted(groups, key=lambda g: _draw(g, seed))
    held = {g for g in ranked if _draw(g, seed) < test_fraction}
    if len(groups) >= 2:
        held = held or {ranked[0]}
        if len(held) == len(groups):
            held.discard(ranked[-1])
    record = SplitRecord(by=by, test_fraction=test_fraction, seed=seed)
    for task in tasks:
        (record.test if group_of(task) in held else record.train).append(task.task_id)
    return record


def recorded_split(run_dir: Path, tasks: list[BenchmarkTask], by: SplitBy, test_fraction: float,
                   seed: int) -> SplitRecord:
    """The run's recorded split; made and written (atomically) on first use. Asking for another one than the
    recorded one is an error: two processes must never train and test on different splits of one run."""
    path = Path(run_dir) / SPLITS_FILE
    wanted = make_split(tasks, by, test_fraction, seed)
    if path.exists():
        try:
            recorded = SplitRecord.model_validate_json(path.read_text(encoding="utf-8"))
        except ValueError:
            raise InputError(f"{path} is damaged; delete it to split the run again") from None
        if (recorded.by, recorded.test_fraction, recorded.seed) != (by, test_fraction, seed):
            raise InputError(f"{run_dir} is already split by {recorded.by} (test fraction {recorded.test_fraction}, "
                             f"seed {recorded.seed}); ask for that split, or delete {path.name} to split it again")
        known = set(recorded.train) | set(recorded.test)
        if known != {t.task_id for t in tasks}:
            raise InputError(f"{path} names other tasks than the run holds; delete it to split the run again")
        return recorded
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(wanted.model_dump(mode="json"), indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return wanted


def read_split(run_dir: Path) -> SplitRecord | None:
    """The run's recorded split, if any (for `report`)."""
    path = Path(run_dir) / SPLITS_FILE
    try:
        return SplitRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def split_line(run_dir: Path) -> str:
    """The run's recorded split in words (for `report`), or '' where it has none."""
    record = read_split(run_dir)
    if record is None:
        return ""
    return (f"RL split by {record.by} (test fraction {record.test_fraction}, seed {record.seed}): "
            f"{len(record.train)} train / {len(record.test)} test tasks")
