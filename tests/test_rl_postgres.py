"""RL environments over a Postgres run: episodes on clones of the run's template, and a training process
killed mid-episode leaves no clone behind once the next one starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import rl
from environment.sources.postgres.introspect import database_checksum
from graphs.run import main
from rl import loop
from rl.oracle import play_reference
from tests.test_postgres_load import _load
from tests.test_postgres_runs import _forge_databases

ROOT = Path(__file__).resolve().parent.parent

TRAINER = """
import sys
import rl
from rl import loop
from rl.oracle import play_reference
environments = rl.from_run(sys.argv[1], split="all")
episodes = [environments.episode() for _ in range(3)]
for episode in episodes:  # each one played to its end, its clone left open as a trainer mid-step would
    loop.run(play_reference(episode, environments.task_ids[0]))
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="module")
def postgres_run(postgres_server, tmp_path_factory) -> tuple[Path, str]:
    uri = postgres_server.create_database("clinic_rl")
    done = _load(uri)
    assert done.returncode == 0, done.stderr
    out = tmp_path_factory.mktemp("rl-pg") / "pg-run"
    assert main(["generate", "--db", uri, "--dialogues", "2", "--tasks-per-dialogue", "1", "--seed", "3",
                 "--out", str(out)]) == 0
    assert _forge_databases(postgres_server) == []
    return out, uri


def test_a_killed_training_process_leaves_no_sandbox_after_the_next_start(postgres_run, postgres_server):
    run, uri = postgres_run
    source = database_checksum(uri)
    trainer = subprocess.Popen([sys.executable, "-c", TRAINER, str(run)], cwd=ROOT, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert trainer.stdout.readline().strip() == "ready"
    finally:
        trainer.kill()
        trainer.wait()
    left = _forge_databases(postgres_server)
    assert len(left) == 4, left  # the template and three clones: nothing dropped them
    environments = rl.from_run(run, split="all")  # the next start
    try:
        remaining = _forge_databases(postgres_server)
        assert len(remaining) == 1 and remaining[0].endswith("_template"), remaining
        episode = environments.episode()
        for task_id in environments.task_ids:
            assert loop.run(play_reference(episode, task_id)).value == 1.0
        writing = next((t for t in environments.tasks if t.writes), environments.tasks[0])
        assert loop.run(play_reference(episode, writing.task_id)).value == 1.0
        test_split = rl.from_run(run, split="all")  # a second split in the same process shares the scope:
        assert episode.reward().value == 1.0       # the live clone is still there
        test_split.close()
        assert episode.reward().value == 1.0
        episode.close()
    finally:
        environments.close()
    assert _forge_databases(postgres_server) == []
    assert database_checksum(uri) == source
