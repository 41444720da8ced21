"""One dialogue with one task on a real small model (SmolLM2-135M-Instruct on llama.cpp's server),
where the project's `llm` extra is installed; skipped, with the reason, where it is not."""

from __future__ import annotations

import json

import pytest

from benchmarks.real_model import missing_requirement, run_real_model
from tests.chat_template import render_strict

MISSING = missing_requirement()

pytestmark = [pytest.mark.real_model,
              pytest.mark.skipif(MISSING is not None, reason=f"real model: {MISSING}")]


@pytest.mark.timeout(1800)  # a CPU model on a shared machine; the run itself has no time limit of ours
def test_one_dialogue_on_a_real_small_model(tmp_path):
    report = run_real_model(tmp_path, dialogues=1, tasks=1, tools=6, concurrency=1)
    # The weak model may produce junk; the run must still end cleanly with the dialogue accounted for.
    assert "Traceback" not in report.errors, report.errors
    assert report.exit_code in (0, 1), report.errors  # 1: the only dialogue was rejected (said in one line)
    assert report.dialogues == 1
    assert report.requests >= 3  # at least the task, the user and the assistant spoke through the server
    out = tmp_path / "real-model-run"
    accepted = out / "dialogues.jsonl"  # absent when the weak model's only dialogue was rejected
    for line in accepted.read_text().splitlines() if accepted.exists() else []:
        render_strict(json.loads(line)["messages"])
    stats = json.loads((out / "stats.json").read_text())
    assert stats["backend"] == "openai" and stats["latency_per_sample_s"] > 0
