"""A reasoning run folder can be finished with `resume`, like a dialogue run."""

from __future__ import annotations

import json
import shutil

from graphs.run import main
from tests.reasoning_support import CORPUS, SCENARIO


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_resume_finishes_a_reasoning_run_from_its_checkpoints(tmp_path):
    out = tmp_path / "run"
    assert main(["reasoning", "--scenario", str(SCENARIO), "--corpus", str(CORPUS), "--users", "4",
                 "--dialogues", "3", "--seed", "2", "--out", str(out)]) == 0
    before = _lines(out / "items.jsonl")
    copy = tmp_path / "interrupted"
    shutil.copytree(out, copy)
    for name in ("items.jsonl", "hardening.json", "quality.json"):  # as if stopped before writing them
        (copy / name).unlink()
    assert main(["resume", str(copy)]) == 0
    after = _lines(copy / "items.jsonl")
    assert [r["question"] for r in after] == [r["question"] for r in before]
    assert [r["label"] for r in after] == [r["label"] for r in before]
    assert json.loads((copy / "hardening.json").read_text())["easy_ratio"] == \
        json.loads((out / "hardening.json").read_text())["easy_ratio"]
    assert main(["resume", str(copy)]) == 0  # again: nothing is written twice
    assert len(_lines(copy / "items.jsonl")) == len(before)
