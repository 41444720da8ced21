"""Data from evaluations: preference pairs (`export EVAL_DIR --format dpo`) proven by state.

The benchmark is a small offline clinic run; the model under test passes read tasks and fails write tasks
(tests/evaluation_fakes.WrongValueAssistant); the offline assistant, evaluated with the same seed, meets the
same users trial by trial and passes them all.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage
from rich.console import Console

from backends.offline import OfflineBackend
from backends.protocols import AssistantRequest, UserTurnRequest
from backends.registry import register_backend
from graphs.dialogue import build_dialogue_graph
from graphs.run import main
from results.exporters.openai_format import chat_message
from results.exporters.preference import common_prefix
from runner import event_loop
from runner.evaluate import evaluate
from state.config import Settings
from state.dialogue import Usage, UserTurn
from tests.evaluation_fakes import WrongValueAssistant

ROOT = Path(__file__).resolve().parent.parent
SEED = 4


class ChattyEarlyUser(OfflineBackend):
    """The offline user, who ends the task at its second turn whatever is still open, with an assistant that
    opens each answer with a pleasantry (so its trials part from the offline assistant's at an assistant turn)."""

    async def assistant_turn(self, request: AssistantRequest) -> tuple[AIMessage, Usage]:
        message, usage = await super().assistant_turn(request)
        if message.tool_calls or not message.text:
            return message, usage
        return AIMessage(content="Certainly! " + message.text), usage

    async def user_turn(self, request: UserTurnRequest) -> tuple[UserTurn, Usage]:
        turn, usage = await super().user_turn(request)
        if request.user_turn >= 1:
            return UserTurn(user_message="That will do, thanks. Bye.", is_task_complete=True), usage
        return turn, usage


class SampledWrites(WrongValueAssistant):
    """The offline assistant as if it sampled: the second time it meets the very same conversation it writes wrong
    values (so, with one user for every trial, trial 0 passes a write task, trial 1 fails it, trial 2 passes)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter = Counter()

    async def assistant_turn(self, request: AssistantRequest) -> tuple[AIMessage, Usage]:
        key = json.dumps([(m.type, m.text, getattr(m, "tool_calls", None)) for m in request.messages], default=str)
        self.seen[key] += 1
        if self.seen[key] % 2 == 0:
            return await super().assistant_turn(request)
        return await OfflineBackend.assistant_turn(self, request)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _evaluate(run: Path, out: Path, backend: str) -> Path:
    event_loop.run(evaluate(build_dialogue_graph, run, out, Settings(backend=backend), Console(quiet=True),
                            trials=3, seed=SEED))
    return out


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory) -> dict[str, Path]:
    """A 6 x 2-task offline run and three evaluations of it with the same seed (the same users trial by trial)."""
    root = tmp_path_factory.mktemp("preferences")
    run = root / "clinic"
    assert main(["generate", "--db", str(ROOT / "examples" / "clinic.sqlite"), "--dialogues", "6",
                 "--tasks-per-dialogue", "2", "--seed", "3", "--concurrency", "4", "--out", str(run)]) == 0
    register_backend("writes-wrong", WrongValueAssistant())
    register_backend("chatty-early-user", ChattyEarlyUser())
    return {"run": run, "offline": _evaluate(run, root / "eval-offline", "offline"),
            "writes-wrong": _evaluate(run, root / "eval-writes-wrong", "writes-wrong"),
            "early": _evaluate(run, root / "eval-early", "chatty-early-user")}


def _trials(eval_dir: Path) -> dict[str, dict]:
    return {t["id"]: t for t in _lines(eval_dir / "trials.jsonl")}


def _conversation(eval_dir: Path, trial: dict) -> list[dict]:
    """The trial's conversation as the assistant saw it, rebuilt from the evaluation's files."""
    from prompts import load_prompt

    task = next(t for t in _lines(eval_dir / "tasks.jsonl") if t["task_id"] == trial["task_id"])
    head = [{"role": "system", "content": load_prompt("assistant").text.strip()}]
    return [*head, *(chat_message(m, objects=True) for m in task["prefix"] + trial["messages"])]


def _without_ids(message: dict) -> dict:
    calls = [{**c, "id": ""} for c in message.get("tool_calls") or []]
    return {**message, "tool_calls": calls}


def _export(tmp_path: Path, *eval_dirs: Path, extra: tuple[str, ...] = (), code: int = 0) -> Path:
    out = tmp_path / "dpo"
    assert main(["export", *map(str, eval_dirs), "--format", "dpo", "--out", str(out), *extra]) == code
    return out


def test_pairs_hold_a_passing_and_an_assistant_fault_trial_parting_after_their_common_prefix(evaluations, tmp_path):
    offline, wrong = evaluations["offline"], evaluations["writes-wrong"]
    trials = {"eval-offline": _trials(offline), "eval-writes-wrong": _trials(wrong)}
    assert all(t["reward"] == 1 for t in trials["eval-offline"].values())
    failed = [t for t in trials["eval-writes-wrong"].values() if t["reward"] == 0]
    assert failed and all(t["fault"] == "assistant" for t in failed)
    out = _export(tmp_path, offline, wrong, extra=("--pairs-per-task", "2"))
    pairs = _lines(out / "train.jsonl")
    manifest = json.loads((out / "export.json").read_text())
    failing_tasks = {t["task_id"] for t in failed}
    assert {p["metadata"]["task_id"] for p in pairs} == failing_tasks  # every failing write task gives pairs
    assert all(p["metadata"]["writes"] for p in pairs)
    per_task = {task: sum(p["metadata"]["task_id"] == task for p in pairs) for task in failing_tasks}
    assert max(per_task.values()) == 2 and manifest["left_out"]["over --pairs-per-task"] > 0
    for pair in pairs:
        meta = pair["metadata"]
        chosen = trials[meta["chosen"]["evaluation"]][meta["chosen"]["trial"]]
        rejected = trials[meta["rejected"]["evaluation"]][meta["rejected"]["trial"]]
        assert chosen["reward"] == 1 and rejected["reward"] == 0 and rejected["fault"] == "assistant"
        assert meta["rejected"]["why"] == rejected["fault_detail"] and meta["rejected"]["why"]
        assert chosen["seed"] == rejected["seed"], "the same user up to the divergence"
        good = _conversation(offline, chosen)
        bad = _conversation(wrong, rejected)
        n = len(pair["prompt"])
        # the prompt is the longest common prefix: both conversations carry it, and part right after it
        assert good[:n] == pair["prompt"] == bad[:n]
        assert _without_ids(good[n]) != _without_ids(bad[n]) and common_prefix(good, bad) == n
        assert pair["chosen"] == good[n:n + len(pair["chosen"])]
        assert pair["rejected"] == bad[n:n + len(pair["rejected"])]
        assert pair["chosen"][0]["role"] == pair["rejected"][0]["role"] == "assistant"
        assert pair["chosen"][0] != pair["rejected"][0]
        assert all(m["role"] != "user" for m in pair["chosen"] + pair["rejected"])
        assert any(m["role"] == "user" for m in pair["prompt"])
        calls = [c for m in pair["prompt"] + pair["chosen"] + pair["rejected"] for c in m.get("tool_calls") or []]
        assert calls and all(isinstance(c["function"]["arguments"], dict) for c in calls)


def test_the_pairs_read_back_exactly_and_train_one_dpo_step_on_the_cpu(evaluations, tmp_path):
    pytest.importorskip("trl", reason="TRL comes with the dev extra")
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from tests.chat_template import render_hermes
    from tests.tiny_model import tiny_model, tiny_tokenizer

    out = _export(tmp_path, evaluations["offline"], evaluations["writes-wrong"])
    pairs = _lines(out / "train.jsonl")
    dataset = load_dataset("json", data_files=str(out / "train.jsonl"))["train"]
    for row, pair in zip(dataset, pairs):  # Arrow pads no argument object with another tool's keys
        for field in ("prompt", "chosen", "rejected", "tools"):
            assert row[field] == pair[field], field
    texts = [render_hermes(p["prompt"] + p[side], p["tools"]) for p in pairs[:3] for side in ("chosen", "rejected")]
    tiny_tokenizer(texts, tmp_path / "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "tokenizer"), local_files_only=True)
    args = DPOConfig(output_dir=str(tmp_path / "dpo-run"), max_steps=1, per_device_train_batch_size=2,
                     max_length=None, report_to=[], use_cpu=True, save_strategy="no", logging_steps=1, bf16=False,
                     fp16=False, dataloader_num_workers=0, seed=0)
    trainer = DPOTrainer(model=tiny_model(tokenizer), ref_model=tiny_model(tokenizer), processing_class=tokenizer,
                         train_dataset=dataset.select_columns(["prompt", "chosen", "rejected", "tools"]), args=args)
    row = trainer.train_dataset[0]
    rendered = render_hermes(pairs[0]["prompt"] + pairs[0]["chosen"], pairs[0]["tools"])
    assert tokenizer.decode(row["prompt_ids"] + row["chosen_ids"]) == rendered
    result = trainer.train()
    assert result.global_step == 1 and math.isfinite(result.training_loss)
    # --check-template renders each pair's two conversations through the same template
    checked = _export(tmp_path / "checked", evaluations["offline"], evaluations["writes-wrong"],
                      extra=("--check-template", str(tmp_path / "tokenizer")))
    check = json.loads((checked / "export.json").read_text())["template_check"]
    assert check["lines"] == 2 * len(pairs) and check["refused"] == {} and check["double_encoded"] == {}


def test_a_user_who_ends_early_never_appears_in_a_pair(evaluations, tmp_path):
    offline, early = evaluations["offline"], evaluations["early"]
    spoiled = [t for t in _trials(early).values() if t["fault"] == "simulator"]
    assert spoiled, "the user who ends at its second turn leaves part of some goals unsaid"
    # they would pair by their conversations alone: the same user as the offline trial, parting at an assistant turn
    passing = _trials(offline)
    parting = []
    for t in spoiled:
        good, bad = _conversation(offline, passing[t["id"]]), _conversation(early, t)
        n = common_prefix(good, bad)
        parting.append(n < min(len(good), len(bad)) and good[n]["role"] == bad[n]["role"] == "assistant")
    assert any(parting)
    for name, folders in (("two", (offline, early)), ("three", (offline, evaluations["writes-wrong"], early))):
        out = _export(tmp_path / name, *folders, extra=("--pairs-per-task", "9"))
        pairs = _lines(out / "train.jsonl")
        in_pairs = {f"{p['metadata'][side]['evaluation']}/{p['metadata'][side]['trial']}"
                    for p in pairs for side in ("chosen", "rejected")}
        assert pairs and not {f"eval-early/{t['id']}" for t in spoiled} & in_pairs
        # its other trials may pair: a passing one as chosen, one the assistant failed as rejected
        assert all(p["metadata"]["rejected"]["fault"] == "assistant" for p in pairs)
        assert json.loads((out / "export.json").read_text())["left_out"]["simulator faults"] == len(spoiled)


def test_bad_input_is_one_line_exit_2_and_nothing_written(evaluations, tmp_path, capsys):
    out = tmp_path / "dpo"
    # the model that fails every write task passes every read task: no task both passed and failed
    assert main(["export", str(evaluations["writes-wrong"]), "--format", "dpo", "--out", str(out)]) == 2
    assert main(["export", str(evaluations["run"]), "--format", "dpo", "--out", str(out)]) == 2
    assert main(["export", str(evaluations["offline"]), str(evaluations["writes-wrong"]), "--format", "dpo",
                 "--pairs-per-task", "0", "--out", str(out)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(e.startswith("error: ") for e in errors)
    assert "both passed and failed" in errors[0] and "not an evaluation" in errors[1]
    assert not out.exists()


def _tasks_of(run: Path) -> list[dict]:
    return [t for line in _lines(run / "dialogues.jsonl") for t in line["metadata"]["tasks"]]


def _write_share(run: Path) -> float:
    tasks = _tasks_of(run)
    return sum(any(s["changes_data"] for s in t["subtasks"]) for t in tasks) / len(tasks)


def _generate(out: Path, *extra: str) -> Path:
    assert main(["generate", "--db", str(ROOT / "examples" / "clinic.sqlite"), "--dialogues", "20",
                 "--tasks-per-dialogue", "2", "--seed", "5", "--concurrency", "4", "--out", str(out), *extra]) == 0
    return out


def test_generation_aimed_at_the_failed_writes_makes_mostly_write_tasks_recorded_and_repeatable(evaluations, tmp_path,
                                                                                                capsys):
    wrong = evaluations["writes-wrong"]
    plain = _generate(tmp_path / "plain")
    capsys.readouterr()
    aimed = _generate(tmp_path / "aimed", "--target", str(wrong))
    printed = capsys.readouterr().out
    before, after = _write_share(plain), _write_share(aimed)
    print(f"write tasks: {before:.0%} untargeted, {after:.0%} aimed at {wrong.name}")
    assert after >= 0.8 and after > before
    assert "task making aimed by" in printed and "read-only" in printed  # the weights, printed at the start
    targeting = json.loads((aimed / "config.json").read_text())["settings"]["targeting"]
    assert targeting["source"] == str(wrong)
    writes = targeting["slices"]["writes"]
    assert writes["write"]["pass_rate"] == 0 and writes["read-only"]["pass_rate"] == 1
    assert writes["write"]["weight"] > writes["read-only"]["weight"] > 0  # smoothed: no slice vanishes
    assert set(targeting["slices"]) >= {"database", "writes", "difficulty", "subtasks", "tool", "variant"}
    assert set(targeting["slices"]["variant"]) == {"standard"}  # tasks without a variant are standard ones
    assert json.loads((plain / "config.json").read_text())["settings"]["targeting"] is None
    again = _generate(tmp_path / "again", "--target", str(wrong))
    assert [line["messages"] for line in _lines(again / "dialogues.jsonl")] == \
        [line["messages"] for line in _lines(aimed / "dialogues.jsonl")]
    assert _tasks_of(again) == _tasks_of(aimed)
    # stats: the share of tasks per slice beside the evaluation's pass rates
    assert main(["stats", str(aimed)]) == 0
    printed = capsys.readouterr().out
    assert "tasks per slice" in printed and f"{after:.0%}" in printed


def test_target_refuses_a_run_folder_in_one_line(evaluations, tmp_path, capsys):
    out = tmp_path / "aimed"
    assert main(["generate", "--db", str(ROOT / "examples" / "clinic.sqlite"), "--dialogues", "2", "--out", str(out),
                 "--target", str(evaluations["run"])]) == 2
    assert main(["generate", "--db", str(ROOT / "examples" / "clinic.sqlite"), "--dialogues", "2", "--out", str(out),
                 "--target", str(tmp_path / "nowhere")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "is a dialogue run, not an evaluation" in errors[0] and "no evaluation" in errors[1]
    assert not out.exists()


def test_a_run_over_several_databases_draws_each_dialogues_database_by_its_weight_and_resume_keeps_the_weights():
    from runner.targeting import targeted_source
    from state.config import RunConfig, RunSource
    from state.targeting import SliceFigures, Targeting

    targeting = Targeting(source="eval", overall_failure=0.5, slices={"database": {
        "shop": SliceFigures(tasks=4, scored=12, failed=12, weight=0.96),
        "clinic": SliceFigures(tasks=4, scored=12, failed=0, weight=0.04)}})
    config = RunConfig(run_id="r", source_db="", dialogues=200, tasks_per_dialogue=1, seed=3, concurrency=1,
                       databases=[RunSource(path="/data/clinic.sqlite", toolset="toolsets/clinic.json"),
                                  RunSource(path="/data/shop.sqlite", toolset="toolsets/shop.json")])
    drawn = [targeted_source(config, targeting, i).label for i in range(200)]
    assert drawn == [targeted_source(config, targeting, i).label for i in range(200)]  # the same seed, the same run
    assert 0.9 <= drawn.count("/data/shop.sqlite") / 200 < 1.0  # leaning, and no database vanishes
    assert [targeted_source(config, None, i).label for i in range(4)] == [s.label for s in config.databases] * 2
    recorded = Settings(targeting=targeting).public()
    assert Settings.of_run(json.loads(json.dumps(recorded))).targeting == targeting
    assert Settings.of_run(recorded, Settings(backend="offline")).targeting == targeting


def test_with_one_user_for_every_trial_one_evaluation_gives_pairs(evaluations, tmp_path):
    register_backend("sampled-writes", SampledWrites())
    out = tmp_path / "eval-sampled"
    event_loop.run(evaluate(build_dialogue_graph, evaluations["run"], out, Settings(backend="sampled-writes"),
                            Console(quiet=True), trials=3, seed=SEED, concurrency=1, same_user=True))
    trials = _trials(out)
    assert len({t["seed"] for t in trials.values() if t["task_id"] == next(iter(trials.values()))["task_id"]}) == 1
    failed = [t for t in trials.values() if t["reward"] == 0]
    assert failed and all(t["fault"] == "assistant" for t in failed)
    pairs = _lines(_export(tmp_path, out) / "train.jsonl")
    assert {p["metadata"]["task_id"] for p in pairs} == {t["task_id"] for t in failed}
    for pair in pairs:
        meta = pair["metadata"]
        assert meta["chosen"]["evaluation"] == meta["rejected"]["evaluation"] == out.name
        assert trials[meta["chosen"]["trial"]]["reward"] == 1 and trials[meta["rejected"]["trial"]]["reward"] == 0
        assert meta["chosen"]["seed"] == meta["rejected"]["seed"]
    assert json.loads((out / "config.json").read_text())["same_user"] is True


def test_the_offline_task_builder_follows_the_aim_of_a_targeted_task():
    from backends.offline.tasks import generate_task
    from backends.protocols import TaskRequest
    from environment.sources.sqlite.derive import derive_tools
    from environment.sources.sqlite.introspect import inspect_database
    from state.targeting import TaskAim

    schema = inspect_database(str(ROOT / "examples" / "clinic.sqlite"))
    tools = derive_tools(schema)

    def made(aim: TaskAim | None, difficulty: str) -> list:
        return [generate_task(TaskRequest(database=schema, tools=tools, difficulty=difficulty, relation="first",
                                          rng_key=f"7:task:{i}", aim=aim)) for i in range(30)]

    for difficulty in ("easy", "medium", "hard"):
        reading = made(TaskAim(writes=False), difficulty)
        assert not any(s.changes_data for t in reading for s in t.subtasks)
        writing = made(TaskAim(writes=True), difficulty)
        assert sum(any(s.changes_data for s in t.subtasks) for t in writing) >= 27, difficulty
    assert all(len(t.subtasks) == 4 for t in made(TaskAim(subtasks=4), "easy"))
    by_table = {t.name: t.table for t in tools}
    aimed = made(TaskAim(tool="get_vet"), "medium")
    assert sum(any(by_table.get(c.tool) == "vets" for c in t.subtasks[0].steps[0]) for t in aimed) >= 25
    assert made(None, "medium") == made(TaskAim(), "medium")  # an empty aim changes nothing


def test_through_the_llm_path_each_task_request_states_its_aim(evaluations, tmp_path):
    from tests.clinic_model import ClinicModel
    from tests.roles import request_text, role_of_request
    from tests.stub_server import StubServer

    asked = {}
    for name, extra in (("plain", ()), ("aimed", ("--target", str(evaluations["writes-wrong"])))):
        with StubServer(ClinicModel(ROOT / "examples" / "clinic.sqlite")) as server:
            assert main(["generate", "--db", str(ROOT / "examples" / "clinic.sqlite"), "--dialogues", "2",
                         "--tasks-per-dialogue", "1", "--base-url", server.base_url, "--model", "stub-model",
                         "--out", str(tmp_path / name), *extra]) == 0
            asked[name] = [request_text(r) for r in server.requests if role_of_request(r) == "task_generator"]
    assert asked["plain"] and asked["aimed"]
    assert not any("gets wrong" in text for text in asked["plain"])
    assert all("This task is aimed at what the assistant under training gets wrong" in text for text in asked["aimed"])
    assert json.loads((tmp_path / "aimed" / "config.json").read_text())["settings"]["targeting"]["source"] == \
        str(evaluations["writes-wrong"])


def test_a_tasks_pairs_share_one_split(evaluations, tmp_path):
    out = _export(tmp_path, evaluations["offline"], evaluations["writes-wrong"], extra=("--test-fraction", "0.5"))
    train, test = (_lines(out / f"{name}.jsonl") for name in ("train", "test"))
    assert train and test
    assert not {p["metadata"]["task_id"] for p in train} & {p["metadata"]["task_id"] for p in test}
    assert json.loads((out / "export.json").read_text())["splits"] == {"train": len(train), "test": len(test)}
