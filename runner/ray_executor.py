"""Dialogues as Ray tasks, on a cluster or on a local Ray of the run's own.

Each task runs a chunk of dialogues into its own shard of the run folder (see `runner.shards`); the
driver only hands out chunks, counts the lines the shards write for the progress bar, and merges the
shards when the tasks are done. Every node must see the run folder and the source database at the
same paths, and have the project installed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from environment.errors import InputError, RunError
from runner.run_folder import RunFolder
from runner.shards import ShardProgress

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_MAX_CHUNK = 250
# Nothing leaves the machine: no usage statistics, and the tasks' processes inherit the same.
_QUIET_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1", "HF_HUB_OFFLINE": "1"}


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError("--executor ray needs Ray: pip install 'dialogue-forge[ray]'") from None
    return ray


def check_ray(address: str | None) -> None:
    """Before anything is written: Ray is installed, and a given cluster head answers (Ray itself
    would keep retrying an unreachable one for many minutes)."""
    _ray()
    if not address or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--ray-address {address!r} is not host:port (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise InputError(f"no Ray cluster head answers at {address} ({exc.strerror or exc}); start one with "
                         f"`ray start --head`, or leave --ray-address out for a local Ray") from None


@contextmanager
def ray_session(address: str | None) -> Iterator[Any]:
    """Connect to the cluster at `address`, or start a local Ray in a temporary folder of its own."""
    os.environ.update(_QUIET_ENV)
    ray = _ray()
    # Tasks import this project: the driver's copy comes first on their path when the node has it.
    pythonpath = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    common = dict(runtime_env={"env_vars": {**_QUIET_ENV, "PYTHONPATH": pythonpath}}, log_to_driver=False,
                  logging_level=logging.ERROR, configure_logging=True, include_dashboard=False)
    temp_dir = None
    try:
        if address:
            ray.init(address=address, **common)
        else:
            # a short path: Ray's socket paths live under it and may not exceed about 107 characters
            temp_dir = tempfile.mkdtemp(prefix="forge-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)
            ray.init(address="local", _temp_dir=temp_dir, _node_ip_address="127.0.0.1", **common)
    except InputError:
        raise
    except Exception as exc:  # an unreachable or unknown head, a version mismatch
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise InputError(f"cannot start {where}: {str(exc).splitlines()[0][:200]} "
                         f"(check --ray-address, or leave it out for a local Ray)") from None
    try:
        yield ray
    finally:
        ray.shutdown()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)


def chunks(todo: list[int], cpus: int) -> list[list[int]]:
    """Consecutive chunks, about two per CPU so a slow chunk does not hold the run up."""
    size = max(1, min(_MAX_CHUNK, -(-len(todo) // max(1, 2 * cpus))))
    return [todo[k:k + size] for k in range(0, len(todo), size)]


async def run_on_ray(task: Callable[..., None], args: tuple[Any, ...], todo: list[int], folder: RunFolder,
                     address: str | None, on_done: Callable[[], None]) -> None:
    """Run `task(*args, shard_name, indices)` as one Ray task per chunk of `todo`, ticking `on_done`
    for every dataset line the shards write."""
    with ray_session(address) as ray:
        remote = ray.remote(num_cpus=1, max_retries=2)(task)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        attempt = uuid.uuid4().hex[:6]  # every launch writes fresh shards: one writer per shard, always
        pending = {remote.remote(*args, f"{attempt}-{n:04d}", chunk): n for n, chunk in enumerate(chunks(todo, cpus))}
        progress = ShardProgress(folder)
        try:
            while pending:
                ready, _ = await asyncio.to_thread(ray.wait, list(pending), num_returns=1, timeout=0.5)
                for _ in range(progress.new_lines()):
                    on_done()
                for ref in ready:
                    number = pending.pop(ref)
                    try:
                        ray.get(ref)
                    except Exception as exc:  # the task's traceback is kept for the user to read
                        log = folder.file(f"ray-task-{number}.log")
                        log.write_text(str(exc), encoding="utf-8")
                        cause = getattr(exc, "cause", None) or exc  # what the task raised, not Ray's wrapper
                        what = f"{type(cause).__name__}: {cause}".splitlines()[0][:200]
                        raise RunError(f"a Ray task stopped ({what}); see {log}; "
                                       f"finish the run with: python -m graphs.run resume {folder.path}") from None
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)  # the checkpoints keep their work; `resume` goes on from there
        for _ in range(progress.new_lines()):
            on_done()
