"""RL environments over a run's verified tasks (rl/): reset, tools, the user as a tool, the state-check reward,
splits that do not leak, isolation, determinism, bad input, and `export --format rl`."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rl
from environment.errors import InputError
from graphs.run import main
from rl import loop
from rl.episode import USER_LEFT
from rl.oracle import play_reference
from rl.splits import SPLITS_FILE
from tests.conftest import CLINIC, sha256

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def rl_run(tmp_path_factory) -> Path:
    """4 dialogues x 2 tasks on the clinic database, offline."""
    out = tmp_path_factory.mktemp("rl") / "clinic-rl"
    assert main(["generate", "--db", str(CLINIC), "--dialogues", "4", "--tasks-per-dialogue", "2", "--seed", "3",
                 "--concurrency", "4", "--out", str(out)]) == 0
    return out


@pytest.fixture
def fresh_run(rl_run, tmp_path) -> Path:
    """A copy of the run without a recorded split."""
    copy = tmp_path / "run"
    shutil.copytree(rl_run, copy, ignore=shutil.ignore_patterns(SPLITS_FILE))
    return copy


@pytest.fixture(scope="module")
def everything(rl_run) -> rl.Environments:
    envs = rl.from_run(rl_run, split="all")
    yield envs
    envs.close()


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _user_messages(episode: rl.Episode) -> list[str]:
    from langchain_core.messages import HumanMessage

    return [m.text for m in episode.messages[len(episode.task.prefix):] if isinstance(m, HumanMessage)]


# -- the policies ----------------------------------------------------------------------------------------

def test_the_reference_policy_earns_1_on_every_task(everything):
    episode = everything.episode()
    assert len(everything.task_ids) == 8
    for task_id in everything.task_ids:
        reward = loop.run(play_reference(episode, task_id))
        assert reward.value == 1.0, (task_id, reward.failures)
        assert reward.parts["state"] == "match" and reward.parts["facts"] == "pass"
        assert episode.done, "the user ended the task"
    episode.close()


def test_a_policy_that_never_calls_a_tool_earns_0(everything):
    episode = everything.episode()
    for task_id in everything.task_ids:
        episode.reset(task_id)
        for _ in range(30):
            if episode.send_message_to_user("Sorry, I can't look that up right now.") == USER_LEFT:
                break
        reward = episode.reward()
        assert episode.done and not episode.calls
        assert reward.value == 0.0, task_id
        assert "fail" in reward.parts["facts"] or reward.parts["state"] == "mismatch"
    episode.close()


def test_a_policy_that_writes_a_wrong_value_earns_0_and_the_parts_name_the_row(everything):
    writing = [t for t in everything.tasks if t.writes]
    assert writing

    def wrong(name: str, arguments: dict) -> dict:
        if everything.tools_of(task)[name].mode != "write":
            return arguments
        return {k: (v + 7 if isinstance(v, (int, float)) and not isinstance(v, bool) else f"{v} (wrong)")
                if not k.endswith("_id") and v is not None else v for k, v in arguments.items()}

    episode = everything.episode()
    for task in writing:
        reward = loop.run(play_reference(episode, task.task_id, edit=wrong))
        assert reward.value == 0.0, task.task_id
        assert reward.parts["state"] == "mismatch"
        tables = {table for diff in task.task.expected.alternatives for table in diff.tables}
        assert any(" row " in line and any(t in line for t in tables) for line in reward.failures), reward.failures
    episode.close()


# -- determinism and isolation ----------------------------------------------------------------------------

def test_the_same_task_and_seed_give_the_same_user_messages_and_reward(rl_run, everything):
    other = rl.from_run(rl_run, split="all")  # another set of environments: nothing shared but the run
    a, b = everything.episode(), other.episode()
    for task_id in everything.task_ids:
        first, second = loop.run(play_reference(a, task_id)), loop.run(play_reference(b, task_id))
        assert _user_messages(a) == _user_messages(b)
        assert first.model_dump() == second.model_dump()
    openings = {a.reset(t, user_seed=11) for t in everything.task_ids} ^ {a.reset(t) for t in everything.task_ids}
    assert openings, "another user seed draws another user"
    a.close(), b.close(), other.close()


def test_the_default_user_seed_replays_the_recorded_dialogues_opening(rl_run, everything):
    lines = {line["id"]: line for line in _lines(rl_run / "dialogues.jsonl")}
    episode = everything.episode()
    for task in everything.tasks:
        line = lines[task.dialogue_id]
        start = line["metadata"]["task_message_starts"][task.index] + 1  # the exported system prompt first
        assert episode.reset(task.task_id) == line["messages"][start]["content"]
    episode.close()


def test_64_instances_of_one_task_writing_at_once_are_isolated_and_the_source_is_unchanged(everything):
    task = next(t for t in everything.tasks if t.writes)
    before = sha256(CLINIC)
    episodes = [everything.episode() for _ in range(64)]

    async def all_at_once():
        return await asyncio.gather(*(play_reference(e, task.task_id) for e in episodes))

    rewards = loop.run(all_at_once())
    assert [r.value for r in rewards] == [1.0] * 64  # a second insert or update seen by another would mismatch
    diffs = {r.verification.state.real_diff.model_dump_json() for r in rewards}
    assert len(diffs) == 1 and json.loads(diffs.pop())["tables"]
    assert sha256(CLINIC) == before
    for e in episodes:
        e.close()


# -- splits ----------------------------------------------------------------------------------------------

def test_splits_hold_out_whole_dialogues_are_recorded_and_agree_across_processes(fresh_run):
    train = rl.from_run(fresh_run, split="train")
    test = rl.from_run(fresh_run, split="test")
    assert train.task_ids and test.task_ids and not set(train.task_ids) & set(test.task_ids)
    assert {t.dialogue_id for t in train.tasks}.isdisjoint({t.dialogue_id for t in test.tasks})
    recorded = json.loads((fresh_run / SPLITS_FILE).read_text())
    assert recorded["train"] == train.task_ids and recorded["test"] == test.task_ids
    code = ("import rl, json, sys; e = rl.from_run(sys.argv[1], split='test'); print(json.dumps(e.task_ids))")
    out = subprocess.run([sys.executable, "-c", code, str(fresh_run)], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == test.task_ids
    with pytest.raises(InputError, match="another split"):
        test.episode().reset(train.task_ids[0])
    with pytest.raises(InputError, match="already split by task"):
        rl.from_run(fresh_run, split="train", test_fraction=0.5)
    with pytest.raises(InputError, match="two or more databases"):
        rl.from_run(fresh_run, split="train", by="database")
    train.close(), test.close()


# -- bad input -------------------------------------------------------------------------------------------

def test_bad_input_is_a_clear_exception_and_one_line_exit_2_from_the_cli(rl_run, fresh_run, tmp_path, capsys):
    empty = tmp_path / "no-verified-tasks"
    shutil.copytree(rl_run, empty, ignore=shutil.ignore_patterns(SPLITS_FILE))
    (empty / "dialogues.jsonl").write_text("")
    evaluation = tmp_path / "an-evaluation"
    evaluation.mkdir()
    (evaluation / "config.json").write_text(json.dumps({"command": "evaluate", "run_dir": str(rl_run), "trials": 1}))
    cases = [(tmp_path / "nowhere", "not a run folder"), (empty, "no valid dialogue with a checked task"),
             (evaluation, "is a evaluate run folder")]
    for folder, message in cases:
        with pytest.raises(InputError, match=message):
            rl.from_run(folder)
        capsys.readouterr()
        out = tmp_path / f"export-{folder.name}"
        assert main(["export", str(folder), "--format", "rl", "--out", str(out)]) == 2
        errors = capsys.readouterr().err.strip().splitlines()
        assert len(errors) == 1 and message in errors[0] and not out.exists()
    envs = rl.from_run(fresh_run, split="all")
    with pytest.raises(InputError, match="no task 'clinic-rl-d9999-t1'"):
        envs.episode().reset("clinic-rl-d9999-t1")
    with pytest.raises(InputError, match="reset"):
        envs.episode().call_tool("get_owner", {"owner_id": 1})
    envs.close()


# -- tools -----------------------------------------------------------------------------------------------

def test_tools_are_typed_callables_whose_arguments_are_checked_as_the_executor_checks_them(everything):
    import inspect

    from transformers.utils import get_json_schema

    cls = everything.trl_environment_factory()
    environment = cls()
    methods = {n: getattr(environment, n) for n, _ in inspect.getmembers(cls, inspect.isfunction)
               if n not in ("reset", "get_reward") and not n.startswith("_")}
    tools = everything.toolset_of_database("clinic")
    assert set(methods) == {t.name for t in tools} | {"send_message_to_user"}
    for tool in tools:
        schema = get_json_schema(methods[tool.name])["function"]
        assert schema["description"] == " ".join(tool.description.split())
        assert set(schema["parameters"].get("required", [])) == set(tool.parameters.get("required", []))
        for name, spec in tool.parameters["properties"].items():
            assert schema["parameters"]["properties"][name]["type"] == spec["type"]
    task = next(t for t in everything.tasks if "get_owner" in everything.tools_of(t))
    environment.reset(task_id=task.task_id)
    error = json.loads(environment.get_owner(owner_id="not a number"))["error"]
    assert error["type"] == "invalid_arguments"
    assert json.loads(environment.get_owner(owner_id=1))["rows"][0]["owner_id"] == 1
    assert environment.episode.calls[-1].tool == "get_owner"


# -- export ----------------------------------------------------------------------------------------------

def test_export_rl_writes_the_split_task_files_and_scripts_and_report_shows_the_split(fresh_run, tmp_path, capsys):
    out = tmp_path / "rl-export"
    assert main(["export", str(fresh_run), "--format", "rl", "--out", str(out)]) == 0
    manifest = json.loads((out / "rl.json").read_text())
    train, test = _lines(out / "train.jsonl"), _lines(out / "test.jsonl")
    assert [r["task_id"] for r in train] == manifest["split"]["train"]
    assert [r["task_id"] for r in test] == manifest["split"]["test"]
    assert manifest["train"] == len(train) and manifest["test"] == len(test) and train and test
    assert train[0]["prompt"][0]["role"] == "system" and train[0]["prompt"][-1] == {"role": "user", "content": ""}
    for script in ("train_grpo.py", "forge_env.py"):
        compile((out / script).read_text(), script, "exec")
    assert str(fresh_run.resolve()) in (out / "train_grpo.py").read_text()
    capsys.readouterr()
    assert main(["report", str(fresh_run), "--out", str(tmp_path / "report.html")]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert f"{len(train)} train / {len(test)} test tasks" in printed
    assert f"{len(train)} / {len(test)} (by task)" in (tmp_path / "report.html").read_text()


def test_reading_a_runs_split_loads_nothing_that_makes_runs():
    """`report` (results/) reads the recorded split through rl.splits: that must not pull in runner/ or nodes/."""
    code = ("import sys, rl.splits; loaded = [m for m in sys.modules if m.split('.')[0] in ('runner', 'nodes', "
            "'backends')]; print(loaded)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_simulator_fault_is_reported_apart_and_can_be_left_out_of_training(rl_run):
    from backends.registry import register_backend
    from rl.trl import environment_factory
    from state.config import Settings
    from tests.evaluation_fakes import EarlyEndingUser

    register_backend("early-ending-user", EarlyEndingUser())  # greets, never says what it wants, says bye
    envs = rl.from_run(rl_run, split="all", settings=Settings(backend="early-ending-user"))
    keep, leave_out = environment_factory(envs)(), environment_factory(envs, exclude_simulator_faults=True)()
    task_id = envs.task_ids[0]
    for environment in (keep, leave_out):
        environment.reset(task_id=task_id)
        loop.run(play_reference(environment.episode, task_id))
    assert keep.get_reward() == 0.0 and keep.last_reward.fault == "simulator"
    assert any("never stated" in line for line in keep.last_reward.failures)
    assert leave_out.get_reward() is None and leave_out.last_reward.fault == "simulator"
    envs.close()


def test_the_judge_is_scored_only_when_asked(rl_run):
    envs = rl.from_run(rl_run, split="all", judge=True)
    episode = envs.episode()
    reward = loop.run(play_reference(episode, envs.task_ids[0]))
    assert reward.value == 1.0 and reward.parts["judge"] == "pass"
    episode.close(), envs.close()


@pytest.fixture(scope="module")
def two_databases(tmp_path_factory) -> Path:
    """A run over two databases (copies of the bundled one under two names): a toolset each."""
    folder = tmp_path_factory.mktemp("two-dbs")
    for name in ("north", "south"):
        shutil.copyfile(CLINIC, folder / f"{name}.sqlite")
    out = folder / "two-run"
    assert main(["generate", "--db", str(folder / "north.sqlite"), str(folder / "south.sqlite"),
                 "--dialogues-per-db", "2", "--tasks-per-dialogue", "1", "--seed", "3", "--out", str(out)]) == 0
    return out


def test_a_run_over_two_databases_splits_by_database_with_an_environment_per_database(two_databases):
    from rl.verifiers_env import dataset_rows

    train = rl.from_run(two_databases, split="train", by="database")
    test = rl.from_run(two_databases, split="test", by="database")
    assert len(train.databases) == len(test.databases) == 1 and train.databases != test.databases
    everything = rl.from_run(two_databases, split="all", by="database")
    assert sorted(everything.databases) == ["north", "south"]
    factory = everything.trl_environment_factory()
    assert isinstance(factory, dict) and sorted(factory) == ["north", "south"]
    rows = everything.trl_dataset().to_list()
    assert {r["environment"] for r in rows} == {"north", "south"}
    for row in rows:
        environment = factory[row["environment"]]()
        assert environment.reset(**{k: v for k, v in row.items() if k != "environment"})
        assert environment.episode.task.database == row["environment"]
    assert {json.loads(r["info"])["database"] for r in dataset_rows(everything)} == {"north", "south"}
    assert "environment" not in train.trl_dataset().column_names  # one database: one environment
    for envs in (train, test, everything):
        envs.close()


def test_episodes_over_simulated_tools_are_rewarded_by_the_simulated_worlds_state(tmp_path):
    from tests.golden.make import SEEDS

    (tmp_path / "seeds.json").write_text(json.dumps(SEEDS))
    assert main(["toolprep", "--tools", str(tmp_path / "seeds.json"), "--domain", "online bookstore", "--seed", "12",
                 "--out", str(tmp_path / "tools")]) == 0
    run = tmp_path / "run"
    assert main(["generate", "--toolset", str(tmp_path / "tools" / "toolset.json"), "--dialogues", "2", "--seed", "12",
                 "--out", str(run)]) == 0
    envs = rl.from_run(run, split="all")
    episode = envs.episode()
    rewards = [loop.run(play_reference(episode, task_id)) for task_id in envs.task_ids]
    assert envs.databases == ["simulated"]
    assert [r.value for r in rewards] == [1.0] * len(rewards), [r.failures for r in rewards]
    assert any(r.verification.state.real_diff.tables for r in rewards), "the simulator's world changed"
    assert any(c.simulated for c in episode.calls)
    episode.close(), envs.close()
