"""`evaluate`: a run's tasks played again by a model under test, K trials each, scored by state and facts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from math import comb
from pathlib import Path

import pytest
from rich.console import Console

from backends.registry import register_backend
from graphs.dialogue import build_dialogue_graph
from graphs.run import main
from results.evaluation import read_evaluation, summarize
from runner import event_loop
from environment.sources.pool import DialogueSandboxes
from runner.evaluate import evaluate, run_trials, select_tasks
from runner.layout import load_toolset
from runner.run_folder import RunFolder
from state.config import Settings
from tests.evaluation_fakes import (EarlyEndingUser, FlakyAssistant, InventingUser, NoToolsAssistant,
                                    UnreachableAssistant, WrongValueAssistant)
from tests.real_servers import ServerLike
from tests.stub_server import StubServer, stub_agent
from tests.roles import role_of_request

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    """6 dialogues x 2 tasks on the clinic database, offline."""
    out = tmp_path_factory.mktemp("runs") / "clinic-six"
    assert main(["generate", "--db", str(ROOT / "examples" / "clinic.sqlite"), "--dialogues", "6",
                 "--tasks-per-dialogue", "2", "--seed", "3", "--concurrency", "4", "--out", str(out)]) == 0
    return out


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _by_hand(trials: list[dict], k: int, skip_faults: tuple[str, ...] = ()) -> float:
    per_task: dict[str, list[int]] = defaultdict(list)
    for t in trials:
        if t["reward"] is not None and t["fault"] not in skip_faults:
            per_task[t["task_id"]].append(t["reward"])
    usable = [(len(r), sum(r)) for r in per_task.values() if len(r) >= k]
    return sum(comb(c, k) / comb(n, k) for n, c in usable) / len(usable)


def _evaluate(run: Path, out: Path, backend: str, trials: int = 1, **options) -> list[dict]:
    event_loop.run(evaluate(build_dialogue_graph, run, out, Settings(backend=backend), Console(quiet=True),
                            trials=trials, **options))
    return _lines(out / "trials.jsonl")


def test_offline_evaluate_prints_pass_k_writes_files_and_matches_the_estimator(small_run, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", str(small_run), "--trials", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for k in (1, 2, 3):
        assert f"pass^{k}" in printed
    trials = _lines(out / "trials.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    tasks = _lines(out / "tasks.jsonl")
    assert len(trials) == 3 * len(tasks) == 3 * summary["tasks"]
    for field in ("task_id", "trial", "seed", "model", "messages", "real_diff", "reward", "parts", "fault", "tokens",
                  "latency_s"):
        assert field in trials[0]
    assert trials[0]["messages"][0]["role"] == "user"
    for k in (1, 2, 3):
        assert summary["pass_hat"][k - 1]["value"] == pytest.approx(_by_hand(trials, k))
    # the offline assistant solved every one of these tasks during generation: it should solve them again
    assert summary["pass_hat"][0]["value"] >= 0.9
    assert set(summary["breakdowns"]) == {"database", "difficulty", "subtasks", "writes", "variant"}


def test_pass_k_of_a_flaky_model_is_the_unbiased_estimator_with_flips_and_an_interval(small_run, tmp_path):
    register_backend("flaky", FlakyAssistant())
    trials = _evaluate(small_run, tmp_path / "eval", "flaky", trials=4, seed=5)
    summary = summarize(*read_evaluation(tmp_path / "eval"))
    rewards = [t["reward"] for t in trials]
    assert 0 < sum(rewards) < len(rewards), "the flaky assistant should both pass and fail"
    for k in range(1, 5):
        assert summary.pass_hat[k - 1].value == pytest.approx(_by_hand(trials, k))
        assert summary.pass_hat[k - 1].low <= summary.pass_hat[k - 1].value <= summary.pass_hat[k - 1].high
    assert summary.pass_hat[3].value <= summary.pass_hat[0].value
    assert summary.flip_rate is not None and summary.flip_rate > 0


def test_an_assistant_that_never_calls_a_tool_scores_zero(small_run, tmp_path):
    register_backend("no-tools", NoToolsAssistant())
    trials = _evaluate(small_run, tmp_path / "eval", "no-tools")
    assert trials and all(t["reward"] == 0 and t["fault"] == "assistant" for t in trials)
    assert all("no tool call" in t["fault_detail"] for t in trials)


def test_an_assistant_that_writes_wrong_values_scores_zero_with_a_state_fault(small_run, tmp_path, capsys):
    tasks = [t for line in _lines(small_run / "dialogues.jsonl") for t in line["metadata"]["verification"]
             if any(d["tables"] for d in t["goal_diff"])]
    ids = [f"{line['id']}-t{e['task'] + 1}" for line in _lines(small_run / "dialogues.jsonl")
           for e in line["metadata"]["verification"] if any(d["tables"] for d in e["goal_diff"])]
    assert tasks and ids
    register_backend("wrong-values", WrongValueAssistant())
    trials = _evaluate(small_run, tmp_path / "eval", "wrong-values", task_ids=ids)
    assert len(trials) == len(ids)
    assert all(t["reward"] == 0 and t["fault"] == "assistant" and t["parts"]["state"] == "mismatch" for t in trials)
    assert all(t["calls"] for t in trials), "it did call the tools"
    assert {t["model"] for t in trials} == {"wrong-values"}
    # the report of two evaluations: their pass^k side by side, the databases, each failed trial with its diff
    offline = tmp_path / "offline"
    _evaluate(small_run, offline, "offline", task_ids=ids[:2])
    page = tmp_path / "evaluation.html"
    assert main(["report", str(offline), str(tmp_path / "eval"), "--out", str(page)]) == 0
    html = page.read_text(encoding="utf-8")
    assert 'id="chart-pass-k"' in html and 'id="database-table"' in html and "https://" not in html.split("<body>")[1]
    assert f"Failed trials ({len(trials)})" in html
    assert all(t["id"] in html for t in trials) and "(wrong)" in html  # the wrong value, in the real diff
    assert main(["report", str(offline), str(small_run), "--out", str(tmp_path / "mixed.html")]) == 2


def _user_messages(trials: list[dict]) -> dict[str, list[str]]:
    return {t["id"]: [m["content"] for m in t["messages"] if m["role"] == "user"] for t in trials}


def test_infrastructure_failures_are_counted_apart_never_scored_and_resume_runs_them_again(small_run, tmp_path):
    server = UnreachableAssistant()
    register_backend("unreachable", server)
    out = tmp_path / "eval"
    trials = _evaluate(small_run, out, "unreachable", trials=2, count=2)
    assert len(trials) == 4
    assert all(t["reward"] is None and t["fault"] == "infrastructure" and "unreachable" in t["error"] for t in trials)
    summary = summarize(*read_evaluation(out))
    assert summary.infrastructure == 4 and summary.scored == 0 and summary.pass_hat[0].value is None
    server.down = False  # back: a resume plays them, each once, from their last checkpoint
    assert main(["evaluate", "--resume", str(out)]) == 0
    again = _lines(out / "trials.jsonl")
    assert sorted(t["id"] for t in again) == sorted(t["id"] for t in trials)
    assert [t["seed"] for t in again] == [t["seed"] for t in sorted(trials, key=lambda t: t["id"])]
    assert all(t["reward"] == 1 for t in again)


def test_the_same_seed_gives_the_same_users_turn_for_turn(small_run, tmp_path):
    first = _evaluate(small_run, tmp_path / "a", "offline", trials=2, seed=9)
    second = _evaluate(small_run, tmp_path / "b", "offline", trials=2, seed=9)
    assert _user_messages(first) == _user_messages(second)
    spread = _evaluate(small_run, tmp_path / "spread", "offline", trials=2, seed=9, workers=2)  # two processes
    assert _user_messages(spread) == _user_messages(first)
    assert [t["seed"] for t in first] == [t["seed"] for t in second]
    other = _evaluate(small_run, tmp_path / "c", "offline", trials=2, seed=10)
    assert [t["seed"] for t in other] != [t["seed"] for t in first]


def test_a_user_that_ends_before_saying_its_goal_is_a_simulator_fault_and_is_rerun(small_run, tmp_path):
    user = EarlyEndingUser()
    register_backend("early-user", user)
    out = tmp_path / "eval"
    trials = _evaluate(small_run, out, "early-user", trials=2, count=3)
    assert len(trials) == 6 and all(t["fault"] == "simulator" and t["reward"] == 0 for t in trials)
    summary = summarize(*read_evaluation(out))
    assert summary.simulator_faults == 6 and summary.pass_hat_without_simulator_faults[0].value is None
    user.early = False  # the fresh user samples say what they want
    with RunFolder(out).own("evaluate") as folder:
        ran = event_loop.run(run_trials(build_dialogue_graph, folder, Settings(backend="early-user"),
                                        Console(quiet=True), rerun_faults=True))
    assert ran == 6
    again = {t["id"]: t for t in _lines(out / "trials.jsonl")}
    assert len(again) == 6
    for old in trials:
        new = again[old["id"]]
        assert new["attempt"] == 1 and new["rerun_of_seed"] == old["seed"] and new["seed"] != old["seed"]
        assert new["fault"] != "simulator" and new["reward"] == 1
        # continued from the checkpoint before the user's ending turn: its opening words are the spoiled trial's
        assert new["rerun_from"] not in ("", "task start")
        assert new["messages"][0]["content"] == old["messages"][0]["content"] == "Hello there, good morning."
        assert "Never mind, bye." not in [m["content"] for m in new["messages"]]


def test_a_user_that_states_a_value_outside_its_task_is_a_simulator_fault(small_run, tmp_path):
    register_backend("inventing-user", InventingUser())
    trials = _evaluate(small_run, tmp_path / "eval", "inventing-user", count=3)
    assert trials and all(t["reward"] == 0 and t["fault"] == "simulator" for t in trials)
    assert all("88412" in t["fault_detail"][0] and "outside its task" in t["fault_detail"][0] for t in trials)


def test_kill_9_then_resume_runs_every_trial_once_and_regrade_gives_the_same_summary(small_run, tmp_path):
    out = tmp_path / "eval"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    proc = subprocess.Popen([sys.executable, "-m", "graphs.run", "evaluate", str(small_run), "--trials", "5",
                             "--concurrency", "2", "--out", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trials_file = out / "trials.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not trials_file.exists() or trials_file.read_bytes().count(b"\n") < 3):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = trials_file.read_bytes().count(b"\n")
    total = 5 * len(_lines(out / "tasks.jsonl"))
    assert 3 <= written < total, "the kill should land mid-evaluation"
    assert main(["evaluate", "--resume", str(out)]) == 0
    ids = [t["id"] for t in _lines(trials_file)]
    assert len(ids) == len(set(ids)) == total
    before = (out / "summary.json").read_text()
    assert main(["evaluate", "--regrade", str(out)]) == 0
    assert (out / "summary.json").read_text() == before


def test_bad_input_is_one_line_exit_2_and_nothing_written(small_run, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", str(small_run), "--task-ids", "no-such-task", "--out", str(out)]) == 2
    assert not out.exists()
    assert main(["evaluate", "--resume", str(small_run)]) == 2
    assert main(["evaluate", str(small_run), "--trials", "0", "--out", str(out)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(e.startswith("error: ") for e in errors)


def test_through_the_llm_path_each_role_reaches_its_own_endpoint(small_run, tmp_path):
    # servers that give JSON only under response_format, as real ones do
    with StubServer(ServerLike(stub_agent)) as assistant_server, StubServer(ServerLike(stub_agent)) as user_server:
        outs = []
        for name in ("a", "b"):
            out = tmp_path / name
            assert main(["evaluate", str(small_run), "--trials", "2", "--tasks", "2", "--seed", "4", "--out", str(out),
                         "--base-url", assistant_server.base_url, "--model", "under-test",
                         "--model-for", f"user=simulator@{user_server.base_url}", "--concurrency", "4"]) == 0
            outs.append(_lines(out / "trials.jsonl"))
        # (each endpoint also gets the backend's probe of its structured mode, which is no role's)
        assistant_roles = {role_of_request(r) for r in assistant_server.requests} - {None}
        user_roles = {role_of_request(r) for r in user_server.requests} - {None}
        user_requests = [r for r in user_server.requests if role_of_request(r) == "user_simulator"]
        assert user_requests and all(r["response_format"]["type"] == "json_schema" for r in user_requests)
        assert all(r["model"] == "simulator" for r in user_requests)
        assert all(r["model"] == "under-test" for r in assistant_server.requests if r.get("tools"))
    assert user_roles == {"user_simulator"}
    assert "user_simulator" not in assistant_roles and "assistant" in assistant_roles
    assert {t["model"] for t in outs[0]} == {"under-test"}
    assert all(t["reward"] is not None for t in outs[0])
    assert _user_messages(outs[0]) == _user_messages(outs[1])  # a deterministic model: the same users


def test_with_judge_the_judges_items_are_scored_too(small_run, tmp_path):
    trials = _evaluate(small_run, tmp_path / "eval", "offline", count=3, judge=True)
    assert trials and all(t["parts"]["judge"] in ("pass", "fail") for t in trials)
    for t in trials:
        passed = t["parts"]["state"] != "mismatch" and t["parts"]["facts"] == "pass" and t["parts"]["judge"] == "pass"
        assert t["reward"] == int(passed)


def test_a_run_over_simulated_tools_is_a_benchmark_too(tmp_path):
    from tests.golden.make import SEEDS

    (tmp_path / "seeds.json").write_text(json.dumps(SEEDS))
    assert main(["toolprep", "--tools", str(tmp_path / "seeds.json"), "--domain", "online bookstore", "--seed", "12",
                 "--out", str(tmp_path / "tools")]) == 0
    run = tmp_path / "run"
    assert main(["generate", "--toolset", str(tmp_path / "tools" / "toolset.json"), "--dialogues", "2", "--seed", "12",
                 "--out", str(run)]) == 0
    out = tmp_path / "eval"
    assert main(["evaluate", str(run), "--trials", "2", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["breakdowns"]["database"]) == {"simulated"} and summary["pass_hat"][0]["value"] >= 0.9
    assert any(t["real_diff"]["tables"] for t in _lines(out / "trials.jsonl")), "the simulator's world changed"
    assert main(["evaluate", "--regrade", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text()) == summary


def test_a_run_over_a_source_of_another_kind_is_a_benchmark_too(tmp_path):
    """A key-value store (tests/kv_source.py) through the tool-source protocol: the second task of each dialogue
    starts from the store as the first task left it, and its own diff is what is scored."""
    from environment.sources.registry import register_source_kind, unregister_source_kind
    from tests.kv_source import KvKind

    register_source_kind(KvKind())
    try:
        store = tmp_path / "shop.json"
        store.write_text(json.dumps({"mug-1": "popular blue mug", "lamp-2": "recent large lamp",
                                     "chair-3": "classic new chair", "desk-4": "large classic desk"}))
        run = tmp_path / "run"
        assert main(["generate", "--db", f"kv://{store}", "--dialogues", "3", "--tasks-per-dialogue", "2", "--seed", "5",
                     "--out", str(run)]) == 0
        out = tmp_path / "eval"
        assert main(["evaluate", str(run), "--trials", "2", "--out", str(out)]) == 0
    finally:
        unregister_source_kind("kv")
    trials = _lines(out / "trials.jsonl")
    later = [t for t in trials if t["task_id"].endswith("-t2")]
    assert later and all(t["reward"] == 1 for t in trials)
    assert set(json.loads((out / "summary.json").read_text())["breakdowns"]["database"]) == {"shop"}


def test_a_later_task_starts_from_the_state_the_earlier_tasks_left(small_run):
    """The earlier tasks' calls, rebuilt from the dataset line alone and replayed on a fresh sandbox, change
    exactly what those tasks changed in the dialogue: the trial starts where the task began."""

    lines = {line["id"]: line for line in _lines(small_run / "dialogues.jsonl")}
    tools = {t["function"]["name"] for line in lines.values() for t in line["tools"]}
    tasks, _ = select_tasks(small_run, None, [], 0)
    later = [t for t in tasks if t.index == 1 and lines[t.dialogue_id]["metadata"]["verification"][0]["real_diff"]
             ["tables"]]
    assert later, "no dialogue whose first task wrote"
    toolset = {t.name: t for t in load_toolset(small_run / "toolset.json")}
    assert tools <= set(toolset)
    for task in later:
        assert task.prefix[0]["role"] == "user" and task.prefix_calls and task.earlier_tasks
        boxes = DialogueSandboxes(task.sources, task.seed)
        try:
            boxes.open_for(toolset[c.tool] for c in task.prefix_calls)
            before = boxes.snapshot()
            boxes.replay(task.prefix_calls, toolset)
            assert not boxes.diverged, "every recorded result came out again"
            diff = boxes.diff(before, boxes.snapshot()).model_dump(mode="json")
        finally:
            boxes.close()
        assert diff == lines[task.dialogue_id]["metadata"]["verification"][0]["real_diff"]


def test_a_task_oriented_run_is_played_on_its_own_graph_one_direct_question_per_trial(tmp_path):
    run = tmp_path / "run"
    assert main(["generate", "--db", str(ROOT / "examples" / "clinic.sqlite"), "--pipeline", "task", "--dialogues", "2",
                 "--tasks-per-dialogue", "1", "--seed", "2", "--out", str(run)]) == 0
    out = tmp_path / "eval"
    assert main(["evaluate", str(run), "--trials", "2", "--out", str(out)]) == 0
    trials = _lines(out / "trials.jsonl")
    assert len(trials) == 4 and all(t["reward"] == 1 for t in trials)
    assert all([m["role"] for m in t["messages"]].count("user") == 1 for t in trials)
