"""The user generator and the user agent: distinct profiles, actions with a growing memory, grounded
dialogues, and resuming the agent from any checkpoint."""

from __future__ import annotations

import asyncio
import json

import numpy as np

from backends.protocols import ProfileRequest
from backends.offline.user_agent import OfflineAgentBackend
from graphs.reasoning import build_reasoning_item_graph
from graphs.user_agent import build_user_agent_graph
from knowledge.embedder import get_embedder
from nodes.user_generator import generate_profile_pool
from runner.reasoning import open_reasoning_checkpointer
from state.agent import Profile, ReasoningSettings, UserAgentState
from tests.reasoning_support import CORPUS, SCENARIO, items, reasoning_run

SETTINGS = ReasoningSettings(backend="offline")


def _profiles(count: int, seed: int = 1, backend=None) -> tuple[list[Profile], int]:
    pool = asyncio.run(generate_profile_pool(SCENARIO.read_text(), count, backend or OfflineAgentBackend(),
                                             get_embedder(), SETTINGS, seed))
    return pool.profiles, pool.regenerated


def test_the_profile_pool_has_no_near_duplicates():
    profiles, _ = _profiles(12)
    assert len(profiles) == 12
    assert len({p.profile_id for p in profiles}) == 12
    vectors = get_embedder().encode([p.text() for p in profiles])
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, 0)
    assert sims.max() <= SETTINGS.profile_similarity
    assert all(p.problems and p.traits and {f.name for f in p.facts} == {"budget", "household"} for p in profiles)


def test_near_duplicate_profiles_are_regenerated():
    class Repetitive(OfflineAgentBackend):
        """Offers the same person twice before anything new."""

        async def generate_profiles(self, request: ProfileRequest):
            profiles, usage = await super().generate_profiles(request)
            twin = (request.avoid or profiles)[0].model_copy(update={"name": "Someone Else"})
            return [*profiles[:1], twin, *profiles[1:]], usage

    profiles, regenerated = _profiles(4, backend=Repetitive())
    assert regenerated >= 1
    assert len({p.text() for p in profiles}) == 4


def _agent_start(seed: int = 11) -> dict:
    profile = _profiles(1, seed=seed)[0][0]
    return {"agent_id": f"agent-{seed}", "scenario": SCENARIO.read_text(), "corpus": str(CORPUS),
            "profile": profile, "seed": seed}


def test_each_action_is_concrete_and_grows_the_memory():
    graph = build_user_agent_graph().compile()
    final = UserAgentState.model_validate(asyncio.run(graph.ainvoke(_agent_start(), context=SETTINGS)))
    assert SETTINGS.min_actions <= len(final.actions) <= SETTINGS.max_actions
    assert len(final.memory_history) == len(final.actions)
    sizes = [m.size for m in final.memory_history]
    assert all(b > a for a, b in zip(sizes, sizes[1:])), sizes
    dates = [a.date for a in final.actions]
    assert dates == sorted(dates) and len(set(dates)) == len(dates)
    for action in final.actions:
        assert "$" in action.description and action.date in action.description
        assert {f.name.split("_")[1] for f in action.facts} == {"qty", "price", "cost"}
        cost = {f.name.split("_")[1]: f.value for f in action.facts}
        assert round(cost["qty"] * cost["price"], 2) == cost["cost"]
        assert action.sources, "every action is priced from a retrieved document"
    assert all(f in final.memory.facts for a in final.actions for f in a.facts)


def test_the_agent_resumes_from_a_mid_checkpoint_to_the_same_final_state(tmp_path):
    start = _agent_start(5)

    async def go():
        async with open_reasoning_checkpointer(tmp_path / "cp.sqlite") as saver:
            graph = build_user_agent_graph().compile(checkpointer=saver)
            cfg = {"configurable": {"thread_id": "ua"}, "recursion_limit": 100}
            await graph.ainvoke(start, cfg, context=SETTINGS)
            final = (await graph.aget_state(cfg)).values
            history = [s async for s in graph.aget_state_history(cfg)]
            middle = [s for s in history if s.next == ("act",) and s.values.get("actions")]
            assert middle, "there is a checkpoint between two actions"
            mid = middle[-1]  # the earliest: after the first action's reflection and observation
            assert len(mid.values["actions"]) < len(final["actions"])
            await graph.ainvoke(None, {"configurable": {"thread_id": "ua",
                                                        "checkpoint_id": mid.config["configurable"]["checkpoint_id"]},
                                       "recursion_limit": 100}, context=SETTINGS)
            resumed = (await graph.aget_state(cfg)).values
        async with open_reasoning_checkpointer(tmp_path / "cp.sqlite") as saver:  # reopened: models come back
            graph = build_user_agent_graph().compile(checkpointer=saver)
            reopened = (await graph.aget_state({"configurable": {"thread_id": "ua"}})).values
        return final, resumed, reopened

    final, resumed, reopened = asyncio.run(go())
    a, b = UserAgentState.model_validate(final), UserAgentState.model_validate(resumed)
    assert a.model_dump(exclude={"usage"}) == b.model_dump(exclude={"usage"})
    assert type(reopened["actions"][0]).__name__ == "Action" and type(reopened["memory"]).__name__ == "Memory"


def test_dialogues_recount_the_actions_with_their_numbers():
    out, code, _ = reasoning_run()
    assert code == 0
    records = items(out)
    assert len(records) == 12
    for record in records:
        said = " ".join(m["content"] for m in record["messages"] if m["role"] == "user")
        assert record["messages"][0]["role"] == "system" and {m["role"] for m in record["messages"][1:]} == \
            {"user", "assistant"}
        for action in record["actions"]:
            cost = next(f for f in action["facts"] if f["name"].endswith("_cost"))
            assert f"${cost['value']:,.2f}" in said and action["date"] in said
        sizes = record["memory_sizes"]
        assert len(sizes) == len(record["actions"]) and sizes == sorted(set(sizes))
    profiles = json.loads((out / "profiles.json").read_text())["profiles"]
    assert len(profiles) == 6


def test_direct_and_profile_modes_skip_the_agent():
    graph = build_reasoning_item_graph().compile()
    start = {**_agent_start(2), "make_question": False}
    direct = asyncio.run(graph.ainvoke({**start, "mode": "direct"}, context=SETTINGS))
    profile = asyncio.run(graph.ainvoke({**start, "mode": "profile"}, context=SETTINGS))
    assert not direct.get("actions") and not profile.get("actions")
    assert direct.get("question") is None
    assert start["profile"].name not in direct["messages"][0].text
    assert start["profile"].name in profile["messages"][0].text
