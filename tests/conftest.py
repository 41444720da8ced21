"""Shared fixtures: the bundled database, a clean environment, and one offline run reused by many tests."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.postgres_server import postgres_server  # noqa: F401  (a throwaway Postgres for the tests that ask)

ROOT = Path(__file__).resolve().parent.parent
CLINIC = ROOT / "examples" / "clinic.sqlite"

# Tests never reach a model server: no endpoint from the developer's environment leaks in.
for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL", "FORGE_BACKEND", "FORGE_BASE_URL"):
    os.environ.pop(var, None)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("LANGSMITH_TRACING", "false")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _written(out: Path) -> int:
    return sum(len((out / name).read_text().splitlines())
               for name in ("dialogues.jsonl", "rejected.jsonl") if (out / name).exists())


def generate_killed_mid_run(out: Path, dialogues: int, *options: str, after: int = 3, db: str = str(CLINIC),
                            env: dict[str, str] | None = None) -> None:
    """`generate` on a source (the bundled database by default) in a process of its own, killed with SIGKILL
    once `after` dialogues are written; `env` adds to its environment."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}, **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "graphs.run", "generate", "--db", db, "--dialogues",
                             str(dialogues), "--concurrency", "4", *options, "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and _written(out) < after:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.fixture(autouse=True)
def registered_backends_forgotten():
    """A backend a test registers by name (a scripted model, a crashing judge) is forgotten after it, so no
    later test runs on it by accident."""
    yield
    from backends.registry import unregister_backends

    unregister_backends()


@pytest.fixture(scope="session")
def clinic_db() -> Path:
    return CLINIC


@pytest.fixture(scope="session")
def offline_run(tmp_path_factory) -> Path:
    """20 dialogues x 2 tasks on the example database, offline, through the CLI entry point."""
    from graphs.run import main

    out = tmp_path_factory.mktemp("runs") / "clinic-run"
    before = sha256(CLINIC)
    code = main(["generate", "--db", str(CLINIC), "--dialogues", "20", "--tasks-per-dialogue", "2",
                 "--seed", "7", "--concurrency", "4", "--out", str(out)])
    assert code == 0
    assert sha256(CLINIC) == before, "the source database must never change"
    return out


@pytest.fixture(scope="session")
def second_run(tmp_path_factory) -> Path:
    """A second, smaller offline run (another seed, one task per dialogue), for merging and side-by-side views."""
    from graphs.run import main

    out = tmp_path_factory.mktemp("runs") / "clinic-second"
    code = main(["generate", "--db", str(CLINIC), "--dialogues", "4", "--tasks-per-dialogue", "1",
                 "--seed", "11", "--concurrency", "4", "--out", str(out)])
    assert code == 0
    return out


@pytest.fixture(scope="session")
def planted_run(offline_run, tmp_path_factory) -> Path:
    """The offline run copied under another name, with what a real dataset has that it lacks: rejected dialogues,
    a second database (and its toolset), reasoning on an assistant message, and three near-copies."""
    from tests.planting import plant_run

    return plant_run(offline_run, tmp_path_factory.mktemp("runs") / "clinic-planted")
