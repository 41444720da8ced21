"""On a SQL source a dialogue's plan checks and validations run on its own sandbox: one per dialogue, no
copies, no whole-database snapshot; the task's diff is read from the sandbox's change log."""

from __future__ import annotations

import asyncio

from langgraph.checkpoint.memory import InMemorySaver

from environment.sources import pool as pool_module
from environment.sources.sqlite import sandbox as sqlite_sandbox
from graphs.dialogue import build_dialogue_graph
from state.config import Settings
from tests.conftest import CLINIC


def _dialogue(tasks: int, seed: int) -> dict:
    graph = build_dialogue_graph().compile(checkpointer=InMemorySaver())
    start = {"dialogue_id": f"own-{seed}", "source_db": str(CLINIC), "seed": seed, "tasks_per_dialogue": tasks}

    async def run() -> dict:
        with pool_module.sandbox_pool(4):
            return await graph.ainvoke(start, {"configurable": {"thread_id": start["dialogue_id"]},
                                               "recursion_limit": 500}, context=Settings(backend="offline"))
    return asyncio.run(run())


def test_plan_checks_and_validations_open_no_sandbox_beyond_the_dialogues_own(monkeypatch):
    sets, opened, snapshots = [], [], []
    real_init, real_open, real_snapshot = (pool_module.DialogueSandboxes.__init__,
                                           pool_module.DialogueSandboxes.sandbox_for, sqlite_sandbox.Sandbox.snapshot)

    def counted_init(self, *args, **kwargs):
        sets.append(self)
        real_init(self, *args, **kwargs)

    def counted_open(self, tool):
        fresh = tool.source not in self._boxes
        box = real_open(self, tool)
        if fresh and box is not None:
            opened.append(tool.source)
        return box

    def counted_snapshot(self):
        snapshots.append(self)
        return real_snapshot(self)

    monkeypatch.setattr(pool_module.DialogueSandboxes, "__init__", counted_init)
    monkeypatch.setattr(pool_module.DialogueSandboxes, "sandbox_for", counted_open)
    monkeypatch.setattr(sqlite_sandbox.Sandbox, "snapshot", counted_snapshot)
    final = _dialogue(tasks=3, seed=3)

    writes = [c for c in final["calls"] if c.mode == "write" and c.result.ok]
    assert writes, "the dialogue wrote, so its plan checks and validations had diffs to compute"
    checked = [v.verification for v in final["verdicts"] if v.verification is not None]
    assert len(checked) == 3 and any(c.state.real_diff.tables for c in checked)
    assert all(c.state.status == "match" for c in checked)
    assert len(sets) == 1, "one set of sandboxes for the dialogue: no scratch copies for plan checks or validation"
    assert opened == ["sqlite"], "the dialogue's own SQLite sandbox is the only one opened"
    assert snapshots == [], "no whole-database snapshot: diffs come from the change log"


def test_a_plan_check_leaves_the_dialogues_sandbox_as_it_found_it():
    """Writing plans run twice inside savepoints of the dialogue's own sandbox: their goal diffs are found, and
    the sandbox then holds exactly what it held before, its change log included."""
    from backends.offline.tasks import generate_task
    from backends.protocols import TaskRequest
    from environment.sources.sqlite.source import SqliteSource
    from verification.plan_check import check
    from state.dialogue import DialogueState

    source = SqliteSource(str(CLINIC))
    database = source.catalog().database
    tools = source.derive_tools(database, 40)
    state = DialogueState(dialogue_id="plans", source_db=str(CLINIC), seed=5)
    with pool_module.sandbox_pool(2) as pool:
        boxes = pool.checkout(state.dialogue_id, state.sources, state.seed, [], {t.name: t for t in tools})
        boxes.open_for(tools)
        before, mark = boxes.snapshot(), boxes.mark()
        goal_diffs = 0
        for n in range(12):
            task = generate_task(TaskRequest(database=database, tools=tools, difficulty="hard", relation="first",
                                             rng_key=f"plans:{n}"))
            outcome = asyncio.run(check(state, tools, Settings(backend="offline"), task))
            if not isinstance(outcome, str):
                goal_diffs += sum(bool(a.tables) for a in outcome.alternatives)
        assert goal_diffs, "some plans wrote: their goal diffs were read inside the savepoints"
        assert pool.checkout(state.dialogue_id, state.sources, state.seed, [], {}) is boxes
        assert boxes.snapshot() == before and boxes.since(mark).is_empty()
