"""Kills anywhere: ten SIGKILLs spread over a run's life (while its toolset is synthesized, in the middle of
a dialogue line, at seeded random moments, while the statistics are written), each followed by `resume`.
At the end every dialogue is there once, every line parses, every result replays, stats.json is whole."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from graphs.run import main
from runner import run_folder as rf
from runner.layout import load_toolset
from tests import forked
from tests.conftest import CLINIC, sha256
from tests.replay import lines, replay

DIALOGUES = 60  # enough that none of the kills comes after the last line, even on a quiet machine (30 was not)


def _resume(out: Path) -> list[str]:
    return ["resume", str(out)]


def test_ten_kills_at_any_moment_then_resume_loses_and_repeats_nothing(tmp_path):
    out = tmp_path / "run"
    source = sha256(CLINIC)
    rng = random.Random(12)
    moments: list[str] = []

    proc = forked.start(["generate", "--db", str(CLINIC), "--dialogues", str(DIALOGUES), "--tasks-per-dialogue", "1",
                         "--concurrency", "2", "--seed", "9", "--out", str(out)], "synthesis")
    proc.join()
    assert (out / rf.CONFIG).exists() and not (out / rf.TOOLSET).exists(), "killed while synthesizing the toolset"
    moments.append("synthesis")

    plan = ["mid-line", "random", "random", "random", "mid-line", "random", "random", "random", "stats"]
    for moment in plan:
        if moment == "random":
            delay = rng.uniform(0.05, 1.0)
            for _ in range(6):  # a resume that finishes before its moment is no kill: try again, sooner
                proc = forked.start(_resume(out))
                time.sleep(delay)
                if proc.is_alive():
                    break
                delay /= 2
            forked.kill(proc)
        else:
            if moment == "stats":  # a random kill may have come after an earlier resume had written it
                (out / rf.STATS).unlink(missing_ok=True)
            proc = forked.start(_resume(out), moment, after_lines=rng.randint(0, 1))
            proc.join()
            if moment == "mid-line":
                ends = [(out / name).read_bytes()[-1:] for name in (rf.DIALOGUES, rf.REJECTED) if (out / name).exists()]
                assert any(end != b"\n" for end in ends), "the kill should have left a torn line"
            if moment == "stats":
                assert not (out / rf.STATS).exists(), "the kill should have come before stats.json was in place"
        assert proc.exitcode == -9
        moments.append(moment)
    assert len(moments) == 10, moments

    assert main(_resume(out)) == 0
    records = lines(out / rf.DIALOGUES) + lines(out / rf.REJECTED)  # every line parses
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == DIALOGUES, "a dialogue is missing or written twice"
    assert not [r for r in records if r["metadata"].get("error")], "a kill made a dialogue fail"
    tools = {t.name: t for t in load_toolset(out / rf.TOOLSET)}
    assert sum(replay(r, tools, CLINIC) for r in records) > 3 * DIALOGUES
    stats = json.loads((out / rf.STATS).read_text())
    assert stats["samples"] + stats["rejected"] == DIALOGUES
    assert sha256(CLINIC) == source
