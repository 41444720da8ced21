"""Checkpoints stay small: the toolset and schema are kept once and referred to, growing lists are stored as
what each step added; every checkpoint still reads, resumes and forks. `--checkpoints final` keeps one per
finished dialogue."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from graphs.run import main
from tests.conftest import CLINIC, generate_killed_mid_run
from tests.checkpoint_support import dataset_lines, first_write_then_read, history, replays

# checkpoints.sqlite per dialogue on this example (offline, 1 task) when every checkpoint carried the whole
# state, toolset and schema included: measured with the generate command of the README.
WHOLE_STATE_BYTES_PER_DIALOGUE = 1_047_511


def _checkpoints_per_thread(out: Path) -> dict[str, int]:
    with sqlite3.connect(out / "checkpoints.sqlite") as conn:
        return dict(conn.execute("SELECT thread_id, COUNT(*) FROM checkpoints GROUP BY thread_id").fetchall())


def _bytes(out: Path) -> int:
    return sum(p.stat().st_size for p in out.glob("checkpoints.sqlite*"))


def test_checkpoints_take_a_tenth_of_the_whole_state_and_a_mid_fork_still_replays(tmp_path):
    out = tmp_path / "run"
    n = 12
    assert main(["generate", "--db", str(CLINIC), "--dialogues", str(n), "--tasks-per-dialogue", "1",
                 "--seed", "2", "--out", str(out)]) == 0
    assert len(dataset_lines(out)) == n
    assert _bytes(out) / n <= WHOLE_STATE_BYTES_PER_DIALOGUE / 10
    assert all(count > 10 for count in _checkpoints_per_thread(out).values()), "every step is still kept"

    records = dataset_lines(out)
    found = first_write_then_read(out, records)
    assert found, "no dialogue wrote and then read"
    dialogue, states, checkpoint = found
    assert states[checkpoint].toolset == [] and states[checkpoint].toolset_key, "the toolset is referred to"
    assert main(["fork", str(out), "--dialogue", dialogue, "--checkpoint", checkpoint, "--seed", "9"]) == 0
    fork = next(r for r in dataset_lines(out).values() if r["metadata"].get("forked_from"))
    assert fork["metadata"]["forked_from"]["checkpoint"] == checkpoint
    replays(out, fork)


def test_final_keeps_one_checkpoint_per_finished_dialogue_and_the_same_dataset(tmp_path, capsys):
    every, final = tmp_path / "every", tmp_path / "final"
    common = ["generate", "--db", str(CLINIC), "--dialogues", "4", "--tasks-per-dialogue", "1", "--seed", "4"]
    assert main([*common, "--out", str(every)]) == 0
    assert main([*common, "--checkpoints", "final", "--out", str(final)]) == 0
    assert json.loads((final / "config.json").read_text())["settings"]["checkpoints"] == "final"
    kept = _checkpoints_per_thread(final)
    assert len(kept) == 4 and set(kept.values()) == {1}
    assert _bytes(final) < _bytes(every)

    def messages(out: Path) -> dict[str, list]:
        return {k.rsplit("-", 1)[-1]: r["messages"] for k, r in dataset_lines(out).items()}

    assert messages(final) == messages(every)
    dialogue = next(iter(dataset_lines(final)))
    rows, states = asyncio.run(history(final, dialogue))
    assert len(rows) == 1 and rows[0].next == "END"
    assert len(states[rows[0].checkpoint_id].messages) + 1 == len(dataset_lines(final)[dialogue]["messages"])
    capsys.readouterr()
    assert main(["show", str(final), "--dialogue", dialogue]) == 0
    assert "writes applied so far" in capsys.readouterr().out


def test_final_still_resumes_an_unfinished_dialogue(tmp_path):
    out = tmp_path / "run"
    n = 24
    generate_killed_mid_run(out, n, "--seed", "8", "--checkpoints", "final")
    written = set(dataset_lines(out))
    assert 3 <= len(written) < n, "the kill should land mid-run"
    counts = _checkpoints_per_thread(out)
    # a written dialogue keeps only its last state (but those cut off between their line and the pruning)
    assert sum(counts[d] == 1 for d in written) >= len(written) - 4
    unfinished = {d: c for d, c in counts.items() if d not in written}
    assert unfinished and max(unfinished.values()) > 1, "an unfinished dialogue keeps its steps"

    assert main(["resume", str(out)]) == 0
    after = dataset_lines(out)
    assert len(after) == n and set(written) <= set(after)
    assert not (out / "rejected.jsonl").exists() or not (out / "rejected.jsonl").read_text().strip()
    assert set(_checkpoints_per_thread(out).values()) == {1}


def test_a_pruning_cut_off_between_its_two_steps_is_finished_by_the_next(tmp_path):
    """The pruned last state is written first, the older rows deleted after: a kill in between leaves a
    parent-less last state beside every older row, and the next pruning (a resume's) must still delete them."""
    from graphs.dialogue import build_dialogue_graph
    from runner.persistence import checkpoint_location, keep_only_last_checkpoint, open_persistence
    from state.config import Settings

    out = tmp_path / "run"
    assert main(["generate", "--db", str(CLINIC), "--dialogues", "1", "--tasks-per-dialogue", "1", "--out",
                 str(out)]) == 0
    thread = next(iter(dataset_lines(out)))
    steps = _checkpoints_per_thread(out)[thread]
    assert steps > 1

    class Killed(Exception):
        pass

    def killed_at_delete(execute):  # the kill comes as the older rows are about to go
        def run(sql, *args, **kwargs):
            if sql.startswith("DELETE"):
                raise Killed
            return execute(sql, *args, **kwargs)
        return run

    async def prune(cut_off: bool) -> None:
        async with open_persistence(checkpoint_location(out, Settings())) as (saver, store):
            graph = build_dialogue_graph().compile(checkpointer=saver, store=store)
            if cut_off:
                saver.conn.execute = killed_at_delete(saver.conn.execute)
                try:
                    await keep_only_last_checkpoint(graph, saver, thread)
                except Killed:
                    pass
            else:
                await keep_only_last_checkpoint(graph, saver, thread)

    asyncio.run(prune(cut_off=True))
    assert _checkpoints_per_thread(out)[thread] == steps  # the last state replaced in place, nothing deleted
    asyncio.run(prune(cut_off=False))
    assert _checkpoints_per_thread(out)[thread] == 1
