"""The Ray executor on a Ray head of the test's own: the same dataset as the local executor, and a
driver killed mid-run that `resume` finishes with every dialogue once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from graphs.run import main
from runner.shards import SHARDS
from tests.conftest import CLINIC, ROOT

pytest.importorskip("ray", reason="the Ray executor needs the 'ray' extra")

DIALOGUES = 20
# A head on the loopback address only, with no usage statistics and no token to share through $HOME.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(head: subprocess.Popen) -> None:
    """Stop the head and every process it started (its own process group), and nothing else."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(head.pid, sig)
        except ProcessLookupError:
            return
        try:
            head.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture(scope="module")
def ray_head():
    temp_dir = tempfile.mkdtemp(prefix="fr", dir="/tmp")  # short: Ray's socket paths are length-limited
    port = _free_port()
    ray_cli = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [str(ray_cli), "start", "--head", "--block", "--port", str(port), "--node-ip-address", "127.0.0.1",
         "--ray-client-server-port", str(_free_port()), "--dashboard-agent-listen-port", str(_free_port()),
         "--num-cpus", "2", "--include-dashboard=false", "--disable-usage-stats", "--temp-dir", temp_dir],
        env={**os.environ, **RAY_ENV}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        deadline = time.time() + 180
        log = []
        for line in head.stdout:  # ready once it says so; a head that dies ends the output
            log.append(line)
            if "Ray runtime started" in line or time.time() > deadline:
                break
        assert any("Ray runtime started" in line for line in log), "".join(log[-20:])
        yield f"127.0.0.1:{port}"
    finally:
        _stop(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def local_dataset(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("local") / "run"
    assert main(["generate", "--db", str(CLINIC), "--dialogues", str(DIALOGUES), "--tasks-per-dialogue", "1",
                 "--seed", "4", "--out", str(out)]) == 0
    return _dataset(out)


def _dataset(out: Path) -> dict:
    lines = [json.loads(line) for line in (out / "dialogues.jsonl").read_text().splitlines()]
    assert len(lines) == len({r["id"] for r in lines}), "a dialogue was written twice"
    return {r["id"]: r["messages"] for r in lines}


def _ids_so_far(out: Path) -> list[str]:
    """Every dataset line written yet: in the run's files and in the shards of running tasks."""
    ids = []
    for path in [out / "dialogues.jsonl", out / "rejected.jsonl", *out.glob(f"{SHARDS}/*/*.jsonl")]:
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        ids += [json.loads(line)["id"] for line in text.splitlines() if line.endswith("}")]
    return ids


def test_ray_tasks_write_the_same_dataset_as_the_local_executor(ray_head, local_dataset, tmp_path, monkeypatch):
    for key, value in RAY_ENV.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "run"  # the same folder name: the same dialogue ids
    assert main(["generate", "--db", str(CLINIC), "--dialogues", str(DIALOGUES), "--tasks-per-dialogue", "1",
                 "--seed", "4", "--executor", "ray", "--ray-address", ray_head, "--out", str(out)]) == 0
    assert _dataset(out) == local_dataset
    assert not (out / SHARDS).exists(), "the shards should have been merged into the run's files"
    some = sorted(local_dataset)[7]
    assert main(["history", str(out), "--dialogue", some]) == 0  # the checkpoints were merged too


def test_a_killed_driver_loses_nothing_and_resume_finishes_the_run(ray_head, local_dataset, tmp_path):
    out = tmp_path / "run"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}, **RAY_ENV}
    driver = subprocess.Popen(
        [sys.executable, "-m", "graphs.run", "generate", "--db", str(CLINIC), "--dialogues", str(DIALOGUES),
         "--tasks-per-dialogue", "1", "--seed", "4", "--concurrency", "1", "--executor", "ray",
         "--ray-address", ray_head, "--out", str(out)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600  # a loaded machine starts Ray's workers slowly
    while time.time() < deadline and not _ids_so_far(out) and driver.poll() is None:
        time.sleep(0.05)
    assert driver.poll() is None, f"the driver ended by itself (exit code {driver.returncode})"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    before = set(_ids_so_far(out))
    assert 1 <= len(before) < DIALOGUES, "the kill should land mid-run"

    os.environ.update(RAY_ENV)  # resume runs on the executor the run recorded: this head
    try:
        assert main(["resume", str(out)]) == 0
    finally:
        for key in RAY_ENV:
            os.environ.pop(key, None)
    after = _dataset(out)
    assert before <= set(after)
    assert after == local_dataset  # every dialogue once, and the same dialogues
    rejected = out / "rejected.jsonl"
    assert not rejected.exists() or not rejected.read_text().strip(), rejected.read_text()[:500]
    assert not (out / SHARDS).exists()


def test_an_unreachable_head_or_workers_with_ray_is_one_line_and_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["generate", "--db", str(CLINIC), "--dialogues", "2", "--executor", "ray", "--out", str(out)]
    assert main([*base, "--ray-address", f"127.0.0.1:{_free_port()}"]) == 2
    assert main([*base, "--ray-address", "no-port-here"]) == 2
    assert main([*base, "--workers", "2"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(e.startswith("error: ") for e in errors), errors
    assert "no Ray cluster head answers" in errors[0] and "host:port" in errors[1] and "--workers" in errors[2]
    assert not out.exists()


def test_ray_tasks_keep_their_checkpoints_in_postgres(ray_head, local_dataset, postgres_server, tmp_path,
                                                      monkeypatch):
    """With --checkpointer, every task writes its checkpoints to the shared Postgres database: the same dataset,
    no checkpoint file in the run folder or its shards, and history reads them there."""
    for key, value in RAY_ENV.items():
        monkeypatch.setenv(key, value)
    uri = postgres_server.create_database("forge_ray_checkpoints")
    out = tmp_path / "run"
    assert main(["generate", "--db", str(CLINIC), "--dialogues", str(DIALOGUES), "--tasks-per-dialogue", "1",
                 "--seed", "4", "--executor", "ray", "--ray-address", ray_head, "--checkpointer", uri,
                 "--out", str(out)]) == 0
    assert _dataset(out) == local_dataset
    assert not (out / "checkpoints.sqlite").exists() and not (out / SHARDS).exists()
    assert main(["history", str(out), "--dialogue", sorted(local_dataset)[7]]) == 0
