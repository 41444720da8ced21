"""Run the command line in a forked copy of the test process (no start-up cost), optionally arranging
for it to kill itself with SIGKILL at an exact moment: mid-line, after toolset synthesis, during stats."""

from __future__ import annotations

import multiprocessing
import os
import signal
from typing import Literal

Sabotage = Literal["", "synthesis", "mid-line", "stats"]


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arrange(sabotage: Sabotage, after_lines: int) -> None:
    import nodes.tool_synthesizer
    from runner import run_folder as rf

    if sabotage == "synthesis":  # the toolset exists in memory, not yet on disk
        real = nodes.tool_synthesizer.synthesize_toolset

        async def synthesized_then_killed(*args, **kwargs):
            await real(*args, **kwargs)
            _die()
        nodes.tool_synthesizer.synthesize_toolset = synthesized_then_killed
    elif sabotage in ("mid-line", "stats"):
        real_write = rf.write_fully
        seen = {"lines": 0}

        def write(fd: int, data: bytes) -> None:
            line = b'"messages"' in data and data.count(b"\n") == 1
            seen["lines"] += line
            if sabotage == "mid-line" and line and seen["lines"] > after_lines:
                real_write(fd, data[: len(data) // 2])
                os.fsync(fd)
                _die()
            if sabotage == "stats" and b'"valid_rate"' in data:
                real_write(fd, data[: len(data) // 3])
                _die()
            real_write(fd, data)
        rf.write_fully = write


def _child(argv: list[str], sabotage: Sabotage, after_lines: int) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    _arrange(sabotage, after_lines)
    from graphs.run import main

    os._exit(main(argv))


def start(argv: list[str], sabotage: Sabotage = "", after_lines: int = 0) -> multiprocessing.Process:
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(argv, sabotage, after_lines))
    proc.start()
    return proc


def kill(proc: multiprocessing.Process) -> None:
    if proc.is_alive():
        os.kill(proc.pid, signal.SIGKILL)
    proc.join()
