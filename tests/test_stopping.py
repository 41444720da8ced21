"""A run that stops part way (a checkpointer gone away, a full disk): the lanes still at work stop before the
sandboxes and the checkpointer they use are closed, and a sandbox closed under a running call waits for it.
Closing a SQLite connection while another thread runs a statement on it crashes the interpreter."""

from __future__ import annotations

import asyncio
import threading

import pytest

from environment.sources.base import CallContext
from environment.sources.sqlite.sandbox import Sandbox
from runner.lanes import all_or_none
from state.tools import Tool
from tests.conftest import CLINIC

# a write that runs for a while: long enough to be mid-statement when the sandbox is closed
_SLOW_WRITE = ("INSERT INTO forge_slow SELECT x FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 "
               "FROM c LIMIT 300000) SELECT x FROM c)")


def test_a_failing_lane_stops_its_siblings_before_the_failure_goes_on():
    stopped: list[str] = []

    async def failing() -> None:
        await asyncio.sleep(0.01)
        raise OSError("the checkpointer went away")

    async def busy(name: str) -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0)  # a lane may await on its way out: it is waited for all the same
            stopped.append(name)

    async def run() -> list[str]:
        with pytest.raises(OSError, match="went away"):
            await all_or_none([busy("a"), failing(), busy("b")])
        return sorted(stopped)  # as the failure reaches the caller, before the loop's own shutdown cancels anything

    assert asyncio.run(run()) == ["a", "b"]


def test_lanes_that_all_end_leave_nothing_behind():
    ended: list[int] = []

    async def lane(i: int) -> None:
        await asyncio.sleep(0.001 * i)
        ended.append(i)

    asyncio.run(all_or_none([lane(i) for i in range(3)]))
    assert sorted(ended) == [0, 1, 2]
    asyncio.run(all_or_none([]))  # none at all: a resume with nothing left


def test_closing_a_sandbox_waits_for_the_call_running_on_it():
    box = Sandbox(str(CLINIC))
    box.conn.execute("CREATE TABLE forge_slow (x INTEGER)")
    tool = Tool(name="fill_slowly", description="a slow write", sql=_SLOW_WRITE, mode="write", source="sqlite",
                parameters={"type": "object", "properties": {}, "additionalProperties": False})
    context = CallContext(reference_time="2026-01-01T00:00:00", clock="2026-01-01T00:00:00", rng_key="k")
    outcome: list = []
    caller = threading.Thread(target=lambda: outcome.append(asyncio.run(box.call(tool, {}, context))))
    caller.start()
    while not box.lock.locked() and caller.is_alive():  # the call holds the sandbox while its statement runs
        pass
    box.close()  # the run stopping: without waiting for the call this is a segmentation fault
    caller.join()
    assert outcome and outcome[0].result.ok and outcome[0].result.rows_affected == 300000
    with pytest.raises(Exception, match="closed"):
        box.conn.execute("SELECT 1")
