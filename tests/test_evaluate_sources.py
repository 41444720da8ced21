"""A source that goes away part way: generation and evaluation run on one dialogue path (runner/lanes.py), so a
trial stops as a dialogue does: no line is written, the run ends with one line saying how to go on, and resume
finishes what was left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from environment.errors import SourceUnavailable
from environment.sources.registry import register_source_kind, unregister_source_kind
from graphs.run import main
from tests.kv_source import KvKind, KvSandbox

GONE = "the key-value store went away"


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if path.exists() else []


async def _gone(self, tool, arguments, context):
    raise SourceUnavailable(GONE)


@pytest.fixture
def kv_store(tmp_path):
    register_source_kind(KvKind())
    store = tmp_path / "shop.json"
    store.write_text(json.dumps({"mug-1": "popular blue mug", "lamp-2": "recent large lamp",
                                 "chair-3": "classic new chair", "desk-4": "large classic desk"}))
    yield store
    unregister_source_kind("kv")


def _one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


def test_a_dialogue_and_a_trial_whose_source_goes_away_get_no_line_and_the_same_one_line_error(
        kv_store, tmp_path, monkeypatch, capsys):
    run, out = tmp_path / "run", tmp_path / "eval"
    generate = ["generate", "--db", f"kv://{kv_store}", "--dialogues", "3", "--tasks-per-dialogue", "2",
                "--seed", "5", "--out", str(run)]

    with monkeypatch.context() as patch:
        patch.setattr(KvSandbox, "call", _gone)
        assert main(generate) == 1
    err = _one_error_line(capsys)
    assert f"dialogue(s) stopped: {GONE}; once it is back, continue the run with: python -m graphs.run " \
           f"resume {run}" in err, err
    assert not _lines(run / "dialogues.jsonl") and not _lines(run / "rejected.jsonl")
    assert main(["resume", str(run)]) == 0
    assert len(_lines(run / "dialogues.jsonl")) == 3
    capsys.readouterr()

    with monkeypatch.context() as patch:
        patch.setattr(KvSandbox, "call", _gone)
        assert main(["evaluate", str(run), "--trials", "2", "--out", str(out)]) == 1
    err = _one_error_line(capsys)
    assert f"trial(s) stopped: {GONE}; once it is back, continue the run with: python -m graphs.run " \
           f"evaluate --resume {out}" in err, err
    assert not _lines(out / "trials.jsonl"), "a source gone away is no fault of the model under test"
    assert main(["evaluate", "--resume", str(out)]) == 0
    trials = _lines(out / "trials.jsonl")
    assert len(trials) == 2 * 6 and all(t["reward"] == 1 and not t.get("error") for t in trials)
