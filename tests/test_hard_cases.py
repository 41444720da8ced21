"""Hard cases (docs/hard-cases.md): missing information, missing tools, out-of-scope requests and crowded
toolsets, each made offline on the bundled database, verified by state and facts, and each way of getting it
wrong caught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from backends.registry import register_backend
from graphs.dialogue import build_dialogue_graph
from graphs.run import main
from verification.hard_cases import variant_problem
from results.evaluation import read_evaluation, regrade, summarize
from results.verify import verify_run
from runner import event_loop
from runner.evaluate import evaluate
from state.config import Settings
from state.tasks import HeldBack, PlannedCall, Subtask, Task
from tests.hard_case_fakes import (ClaimingAssistant, DecoyReader, DecoyWriter, InventingAssistant, NeverAsksAssistant,
                                   OutOfScopeCaller, VolunteeringUser)

ROOT = Path(__file__).resolve().parent.parent
MIX = "missing-info=0.3,missing-tool=0.25,out-of-scope=0.15,crowded=0.25"
CROWD = 60


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "mixed"
    assert main(["generate", "--db", str(ROOT / "examples" / "clinic.sqlite"), "--dialogues", "12",
                 "--tasks-per-dialogue", "2", "--seed", "1", "--variants", MIX, "--crowd", str(CROWD),
                 "--out", str(out)]) == 0
    return out


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _tasks(run: Path) -> list[tuple[dict, int, dict, list[dict]]]:
    """(line, task index, task, the task's messages) of every valid dialogue."""
    out = []
    for line in _lines(run / "dialogues.jsonl"):
        starts = [s + 1 for s in line["metadata"]["task_message_starts"]]  # the system prompt comes first
        for i, task in enumerate(line["metadata"]["tasks"]):
            end = starts[i + 1] if i + 1 < len(starts) else len(line["messages"])
            out.append((line, i, task, line["messages"][starts[i]:end]))
    return out


def _ids(run: Path, variant: str) -> list[str]:
    return [f"{line['id']}-t{i + 1}" for line, i, task, _ in _tasks(run) if task.get("variant", "standard") == variant]


def _evaluate(run: Path, out: Path, backend: str, task_ids: list[str] | None = None) -> list[dict]:
    event_loop.run(evaluate(build_dialogue_graph, run, out, Settings(backend=backend), Console(quiet=True),
                            trials=1, task_ids=task_ids))
    return _lines(out / "trials.jsonl")


def test_every_hard_case_kept_has_its_expected_verdict_and_verify_passes(mixed_run):
    tasks = _tasks(mixed_run)
    seen = {task.get("variant", "standard") for _, _, task, _ in tasks}
    assert seen == {"standard", "missing-info", "missing-tool", "out-of-scope", "crowded"}
    assert not (mixed_run / "rejected.jsonl").exists() or not _lines(mixed_run / "rejected.jsonl")
    for line, i, task, messages in tasks:
        entry = line["metadata"]["verification"][i]
        assert entry["verification"]["valid"] and entry["verification"]["state"] == "match"
        variant = task.get("variant", "standard")
        assert entry["verification"].get("variant", "standard") == variant
        names = {t["function"]["name"] for t in line["tools"]}
        called = [c["function"]["name"] for m in messages for c in m.get("tool_calls") or []]
        if variant == "missing-info":
            held = task["held_back"]
            said = [m for m in messages if m["role"] in ("user", "assistant") and m.get("content")]
            given = next(k for k, m in enumerate(said) if m["role"] == "user" and str(held["value"]) in m["content"])
            assert any(m["role"] == "assistant" and "?" in m["content"] for m in said[:given]), "asked first"
            new_values = [v for d in entry["goal_diff"] for t in d["tables"].values()
                          for row in t["inserted"] + t["updated"]
                          for v in [*row["values"].values(), *(c["new"] for c in row["changes"].values())]]
            assert held["value"] in new_values, "the goal diff holds the user's value"
            assert str(held["value"]) not in task["goal"]
        if variant in ("missing-tool", "out-of-scope"):
            cannot = [f for f in entry["facts"] if f["kind"] == "cannot"]
            assert cannot and all(f["told"] for f in cannot)
        if variant == "missing-tool":
            (withheld,) = task["withheld_tools"]
            assert withheld not in names and withheld not in called
        if variant == "out-of-scope":
            assert not called and entry["goal_diff"] == [{"tables": {}}]
        if task.get("decoys"):
            assert len(task["decoys"]) == CROWD and set(task["decoys"]) <= names
            assert len(names) == 40 + CROWD
    report = event_loop.run(verify_run(mixed_run))
    assert report.problems == [] and len(report.dialogues) == 12
    assert main(["verify", str(mixed_run)]) == 0
    stats = json.loads((mixed_run / "stats.json").read_text())
    assert set(stats["per_variant"]) == seen and all(c["valid"] == c["tasks"] for c in stats["per_variant"].values())


def test_a_bad_variant_mix_is_one_line_and_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["generate", "--db", str(ROOT / "examples" / "clinic.sqlite"), "--dialogues", "1",
                 "--variants", "missing-everything=0.5", "--out", str(out)]) == 2
    assert "unknown variant 'missing-everything'" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("backend, variant, caught", [
    (InventingAssistant, "missing-info", "state"),
    (ClaimingAssistant, "missing-tool", "facts"),
    (ClaimingAssistant, "out-of-scope", "facts"),
    (OutOfScopeCaller, "out-of-scope", "variant"),
    (DecoyWriter, "crowded", "state"),
])
def test_planted_faults_are_caught_by_state_or_facts(mixed_run, tmp_path, backend, variant, caught):
    ids = _ids(mixed_run, variant)
    assert ids
    name = f"{backend.__name__}-{variant}"
    register_backend(name, backend())
    trials = _evaluate(mixed_run, tmp_path / "eval", name, ids)
    assert len(trials) == len(ids)
    for trial in trials:
        assert trial["reward"] == 0 and trial["fault"] == "assistant", trial["fault_detail"]
        if caught == "state":
            assert trial["parts"]["state"] == "mismatch"
        elif caught == "facts":
            assert trial["parts"]["facts"] == "fail"
            assert any("cannot be done" in d for d in trial["fault_detail"])
        else:
            assert "outside the domain" in trial["parts"]["variant"]
    if backend is DecoyWriter:
        assert all(any(c["tool"].startswith("set_") and c["result"]["ok"] for c in t["calls"]) for t in trials)
    # scored again from the saved trials alone (decoys rebuilt, calls replayed), the verdicts stand
    again = {t.id: t for t in event_loop.run(regrade(tmp_path / "eval"))}
    assert all(again[t["id"]].reward == 0 and again[t["id"]].parts == t["parts"] for t in trials)


def test_a_user_that_volunteers_the_held_back_value_is_a_simulator_fault(mixed_run, tmp_path):
    ids = _ids(mixed_run, "missing-info")
    register_backend("volunteering-user", VolunteeringUser())
    trials = _evaluate(mixed_run, tmp_path / "eval", "volunteering-user", ids)
    assert trials and all(t["fault"] == "simulator" and t["reward"] == 0 for t in trials)
    assert all("before the assistant asked" in t["fault_detail"][0] for t in trials)


def test_an_assistant_that_never_asks_scores_zero_on_missing_info_and_full_marks_elsewhere(mixed_run, tmp_path,
                                                                                         capsys):
    register_backend("never-asks", NeverAsksAssistant())
    out = tmp_path / "eval"
    assert main(["evaluate", str(mixed_run), "--trials", "1", "--backend", "never-asks", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = summarize(*read_evaluation(out))
    by_variant = {group: figures.pass_hat[0].value for group, figures in summary.breakdowns["variant"].items()}
    print("pass^1 per variant of an assistant that never asks:", by_variant)
    assert by_variant.pop("missing-info") == 0.0
    assert set(by_variant) == {"standard", "missing-tool", "out-of-scope", "crowded"}
    assert all(value == 1.0 for value in by_variant.values())
    assert "missing-info" in printed and "variant" in printed
    failed = [t for t in _lines(out / "trials.jsonl") if t["reward"] == 0]
    assert failed and all("did not ask" in t["parts"]["variant"] for t in failed)
    page = tmp_path / "evaluation.html"  # the report's table per variant
    assert main(["report", str(out), "--out", str(page)]) == 0
    html = page.read_text(encoding="utf-8")
    assert 'id="variant-table"' in html and "<td>missing-info</td>" in html


def test_the_plan_check_refuses_a_task_that_is_not_the_hard_case_it_claims():
    step = [[PlannedCall(tool="update_owner_phone", arguments={"owner_id": 1, "new_phone": "555-0142"})]]
    sub = Subtask(description="Change the phone.", ask="please change the phone", changes_data=True, steps=step)
    held = HeldBack(subtask=0, argument="new_phone", value="555-0142", label="new phone", reveal="It is 555-0142.")
    task = Task(goal="A clerk changes a phone.", subtasks=[sub], variant="missing-info", held_back=held)
    assert variant_problem(task, []) == ""
    said = task.model_copy(update={"subtasks": [sub.model_copy(update={"ask": "change it to 555-0142"})]})
    assert "is stated in the user's goal" in variant_problem(said, [])
    other = task.model_copy(update={"held_back": held.model_copy(update={"value": "555-0999"})})
    assert "no planned call" in variant_problem(other, [])
    missing = Task(goal="g", subtasks=[sub, Subtask(description="d", cannot="no tool")], variant="missing-tool",
                   withheld_tools=["add_owner"])
    assert "not a tool of this dialogue" in variant_problem(missing, [])
    assert "only missing-tool and out-of-scope" in variant_problem(missing.model_copy(update={"variant": "standard"}),
                                                                  [])


def test_exports_keep_the_variants(mixed_run, tmp_path):
    out = tmp_path / "export"
    assert main(["export", str(mixed_run), "--format", "openai", "--out", str(out)]) == 0
    manifest = json.loads((out / "export.json").read_text())
    expected = {line["id"]: [t.get("variant", "standard") for t in line["metadata"]["tasks"]]
                for line in _lines(mixed_run / "dialogues.jsonl")}
    assert manifest["variants"] == {i: v for i, v in expected.items() if set(v) != {"standard"}}
    assert manifest["variants"]


def test_the_llm_backend_writes_a_missing_info_task_that_the_plan_check_keeps(tmp_path):
    from backends.llm.backend import OpenAIBackend
    from backends.protocols import TaskRequest
    from environment.sources.registry import open_source
    from environment.sources.sqlite.derive import derive_tools
    from nodes.task_generator import checked_task
    from state.dialogue import DialogueState
    from tests.fakes import ScriptedChatModel

    db = str(ROOT / "examples" / "clinic.sqlite")
    schema = open_source(db).catalog().database
    tools = derive_tools(schema, 60)
    assert {"update_owner_phone", "get_owner"} <= {t.name for t in tools}
    plan = {"description": "Change the phone number of owner 1 to the one they give when asked.",
            "ask": "I need to update my phone number.", "changes_data": True,
            "steps": [[{"tool": "update_owner_phone", "arguments": {"owner_id": 1, "new_phone": "555-0177"}}],
                      [{"tool": "get_owner", "arguments": {"owner_id": 1}}]]}
    held = {"subtask": 0, "argument": "new_phone", "value": "555-0177", "label": "new phone number",
            "reveal": "It's 555-0177."}
    blurted = {"goal": "Owner 1 wants their phone changed to 555-0177.", "subtasks": [plan], "held_back": held}
    kept = {"goal": "Owner 1 wants their phone number changed.", "subtasks": [plan], "held_back": held}
    model = ScriptedChatModel(responses=[json.dumps(blurted), json.dumps(kept)])
    backend = OpenAIBackend(Settings(backend="openai", model="m", base_url="http://127.0.0.1:9/v1", api_key="k",
                                     parse_retries=0), chat_model=model)
    state = DialogueState(dialogue_id="llm-d0", source_db=db, seed=3)
    request = TaskRequest(database=schema, tools=tools, difficulty="easy", relation="first", rng_key="k",
                          variant="missing-info")

    async def go():
        try:
            return await checked_task(state, tools, Settings(backend="offline"), backend, request)
        finally:
            await backend.aclose()

    task, _ = event_loop.run(go())
    assert task.variant == "missing-info" and task.held_back.value == "555-0177"
    assert "holds back one value" in model.calls[0][0].text  # the prompt's hard-case section
    assert "is stated in the user's goal" in task.expected.refused[0] and "refused" in model.calls[1][0].text
    (goal,) = task.expected.alternatives
    assert goal.tables["owners"].updated[0].changes["phone"].new == "555-0177"


def test_the_variant_mix_and_the_crowd_have_environment_fallbacks(monkeypatch):
    monkeypatch.setenv("FORGE_VARIANTS", "missing-info=0.2,crowded=0.1")
    monkeypatch.setenv("FORGE_CROWD", "100")
    settings = Settings()
    assert settings.variants == {"missing-info": 0.2, "crowded": 0.1} and settings.crowd == 100
    monkeypatch.setenv("FORGE_VARIANTS", "missing-info=0.7,out-of-scope=0.6")
    with pytest.raises(ValueError, match="more than 1"):
        Settings()


def test_verify_rebuilds_the_decoys_a_crowded_dialogue_called(tmp_path):
    register_backend("decoy-reader", DecoyReader())
    out = tmp_path / "crowded"
    assert main(["generate", "--db", str(ROOT / "examples" / "clinic.sqlite"), "--dialogues", "3", "--seed", "2",
                 "--variants", "crowded=1", "--crowd", "20", "--backend", "decoy-reader", "--out", str(out)]) == 0
    lines = _lines(out / "dialogues.jsonl")
    detours = [c for line in lines for c in line["metadata"]["tool_calls"] if c["id"] == "call_detour_0"]
    assert len(lines) == 3 and detours, "the decoys were called, and the dialogues are still valid"
    assert all(c["tool"] in line["metadata"]["tasks"][0]["decoys"] for line in lines
               for c in line["metadata"]["tool_calls"] if c["id"] == "call_detour_0")
    report = event_loop.run(verify_run(out))
    assert report.problems == [] and sum(d.replayed for d in report.dialogues) >= len(detours)
