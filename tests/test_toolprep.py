"""Tool preparation from seed tools, the tool simulator, and the task-oriented pipeline."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from backends.llm.backend import OpenAIBackend
from backends.registry import register_backend
from environment.errors import InputError
from environment.seeds import read_seed_tools
from environment.sources.dialogue_time import reference_time_for
from environment.sources.simulated.simulator import simulate, validation_error
from environment.tool_specs import fields, spec_problems
from graphs.run import main
from graphs.toolprep import build_toolprep_graph
from environment.sources.simulated.source import reference_time
from state.config import Settings
from state.dialogue import DialogueState, SimulatedWorld
from tests.fakes import ScriptedChatModel
from tests.stub_server import StubServer
from tests.toolprep_model import SEEDS, prep_model, prep_model_of_request

@pytest.fixture()
def seed_file(tmp_path) -> Path:
    path = tmp_path / "seeds.json"
    path.write_text(json.dumps(SEEDS))
    return path


def _types_everywhere(tools: list[dict]) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    for tool in tools:
        for name, t in [*fields(tool["parameters"]), *fields(tool.get("output_schema", {}))]:
            seen.setdefault(name, set()).add(t)
    return seen


def test_seed_formats_are_accepted(tmp_path):
    wrapped, bare = tmp_path / "wrapped.json", tmp_path / "bare.json"
    wrapped.write_text(json.dumps({"tools": [SEEDS[0]]}))
    bare.write_text(json.dumps(SEEDS[1]))
    assert read_seed_tools(wrapped)[0].name == "get_user"
    books = read_seed_tools(bare)[0]
    assert books.parameters["type"] == "object"
    assert books.parameters["properties"]["max_price"]["type"] == "number"


@pytest.mark.parametrize("item, expected", [
    ({"description": "no name"}, "seed tool 0: missing field 'name'"),
    ({"name": "f", "parameters": {"type": "string"}}, "seed tool 0 (f): field 'parameters.type' must be 'object'"),
    ({"name": "f", "parameters": {"type": "object", "properties": {}, "required": ["x"]}},
     "seed tool 0 (f): field 'parameters.required'"),
    ("just text", "seed tool 0: expected a JSON object"),
])
def test_malformed_seeds_are_refused_with_one_line(tmp_path, capsys, item, expected):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([item]))
    with pytest.raises(InputError, match="^" + expected.replace("(", r"\(").replace(")", r"\)")):
        read_seed_tools(path)
    out = tmp_path / "never"
    assert main(["toolprep", "--tools", str(path), "--domain", "books", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and not out.exists()


def test_offline_toolprep_grows_a_consistent_toolset(seed_file, tmp_path):
    out = tmp_path / "prep"
    assert main(["toolprep", "--tools", str(seed_file), "--domain", "online bookstore", "--out", str(out)]) == 0
    tools = json.loads((out / "toolset.json").read_text())
    report = json.loads((out / "toolprep_report.json").read_text())
    assert len(tools) >= 10
    assert len({t["name"] for t in tools}) == len(tools)
    stages = {s["stage"]: s for s in report["stages"]}
    assert 20 <= stages["questions"]["kept"] <= 30
    assert stages["expand"]["kept"] <= 10
    from state.tools import Tool

    for entry in tools:
        tool = Tool.model_validate(entry)
        assert not spec_problems(tool), (tool.name, spec_problems(tool))
        assert tool.output_schema and tool.source == "simulated"
    assert all(len(types) == 1 for types in _types_everywhere(tools).values()), _types_everywhere(tools)


def _check_llm_report(state_or_report: dict) -> None:
    stages = {s["stage"]: s for s in state_or_report["stages"]}
    merge_notes = " ".join(stages["merge"]["notes"])
    assert "user_id is string in list_user_orders" in merge_notes and stages["merge"]["repaired"] == 1
    dropped = stages["design"]["dropped"]
    assert dropped and "BackendOutputError" in dropped[0]["reason"]
    schema_notes = " ".join(stages["output_schemas"]["notes"])
    assert "repaired" in schema_notes or "still conflicting" in schema_notes
    assert state_or_report["field_types"]["user_id"] == "integer"


def test_toolprep_through_a_scripted_model(seed_file):
    model = ScriptedChatModel(responses=[lambda messages: prep_model([m.text for m in messages])] * 200)
    register_backend("scripted-prep", OpenAIBackend(Settings(backend="openai", parse_retries=1), chat_model=model))
    seeds = read_seed_tools(seed_file)[:1]
    out = asyncio.run(build_toolprep_graph().compile().ainvoke(
        {"domain": "bank", "seed_tools": seeds}, context=Settings(backend="scripted-prep")))
    _check_llm_report({"stages": [r.model_dump() for r in out["reports"]], "field_types": out["field_types"]})
    for tool in out["tools"]:
        assert all(len(t) == 1 for t in _types_everywhere([tool.model_dump()]).values())


def test_toolprep_through_the_stub_server(seed_file, tmp_path):
    out = tmp_path / "prep-llm"
    one = tmp_path / "one.json"
    one.write_text(json.dumps(SEEDS[:1]))
    with StubServer(prep_model_of_request) as server:
        assert main(["toolprep", "--tools", str(one), "--domain", "bank", "--base-url", server.base_url,
                     "--model", "stub", "--out", str(out)]) == 0
    _check_llm_report(json.loads((out / "toolprep_report.json").read_text()))


@pytest.fixture()
def prepared(seed_file, tmp_path) -> Path:
    out = tmp_path / "prepared"
    assert main(["toolprep", "--tools", str(seed_file), "--domain", "online bookstore", "--out", str(out)]) == 0
    return out / "toolset.json"


def test_simulated_results_are_valid_consistent_and_remember_writes(prepared):
    from runner.layout import load_toolset

    tools = {t.name: t for t in load_toolset(prepared)}
    world = SimulatedWorld(reference_time=reference_time_for(1))
    rng, now = random.Random(1), dt.datetime.fromisoformat(world.reference_time)
    found = simulate(tools["search_books"], {"query": "blue"}, world, rng, now)
    assert not validation_error(tools["search_books"], found)
    book = found[0]["book_id"]
    first = simulate(tools["get_book"], {"book_id": book}, world, rng, now)
    again = simulate(tools["get_book"], {"book_id": book}, world, rng, now)
    assert first == again and not validation_error(tools["get_book"], first)
    changed = simulate(tools["update_book"], {"book_id": book, "name": "Renamed"}, world, rng, now)
    assert changed["name"] == "Renamed" and not validation_error(tools["update_book"], changed)
    assert simulate(tools["get_book"], {"book_id": book}, world, rng, now)["name"] == "Renamed"
    for name, tool in tools.items():  # every tool's simulated result validates
        args = {p: (book if p == "book_id" else 1 if tool.properties[p].get("type") == "integer" else "x")
                for p in tool.required}
        assert not validation_error(tool, simulate(tool, args, world, rng, now)), name


def test_reference_time_is_per_dialogue_unless_the_user_states_a_date():
    assert reference_time_for(1) == reference_time_for(1) != reference_time_for(2)
    world = SimulatedWorld(reference_time=reference_time_for(1))
    quiet = DialogueState(dialogue_id="d", source_db="", messages=[HumanMessage(content="Show my orders.")])
    dated = DialogueState(dialogue_id="d", source_db="",
                          messages=[HumanMessage(content="What was booked for 2026-03-14?")])
    assert reference_time(quiet.messages, world) == world.reference_time
    assert reference_time(dated.messages, world).startswith("2026-03-14T")


def test_task_and_user_oriented_runs_on_the_same_toolset(prepared, tmp_path, capsys):
    user, task = tmp_path / "user", tmp_path / "task"
    for out, pipeline in ((user, "user"), (task, "task")):
        assert main(["generate", "--toolset", str(prepared), "--dialogues", "8", "--pipeline", pipeline,
                     "--seed", "4", "--out", str(out)]) == 0
    stats = {p: json.loads((out / "stats.json").read_text()) for p, out in (("user", user), ("task", task))}
    assert stats["user"]["turns_mean"] > stats["task"]["turns_mean"]
    assert stats["user"]["valid_rate"] >= 0.9 and stats["task"]["valid_rate"] >= 0.9
    record = json.loads((task / "dialogues.jsonl").read_text().splitlines()[0])
    assert record["metadata"]["tool_results"] == "simulated"
    assert sum(m["role"] == "user" for m in record["messages"]) == 2  # one direct question per task
    capsys.readouterr()
    assert main(["stats", str(user), str(task)]) == 0
    table = capsys.readouterr().out
    assert "user" in table and "task" in table and "Turns" in table


def test_spec_checks_refuse_open_ended_enums_and_bad_schemas():
    from state.tools import Tool

    def tool(props, required=()):
        return Tool(name="find_user", description="d", parameters={"type": "object", "properties": props,
                                                                   "required": list(required)})

    assert not spec_problems(tool({"status": {"type": "string", "enum": ["open", "closed"]}}))
    assert "open-ended" in " ".join(spec_problems(tool({"user_id": {"type": "integer", "enum": [1, 2]}})))
    assert "required" in " ".join(spec_problems(tool({"a": {"type": "string"}}, ["b"])))
    assert "not a valid JSON Schema" in " ".join(spec_problems(tool({"a": {"type": "strnig"}})))
    assert "snake_case" in " ".join(spec_problems(Tool(name="FindUser", description="d",
                                                       parameters={"type": "object", "properties": {}})))


def test_a_model_simulating_off_schema_is_retried_then_replaced(prepared):
    from types import SimpleNamespace

    from backends.protocols import SimulationRequest
    from environment.sources.base import CallContext
    from environment.sources.simulated.source import SimulatedSandbox
    from nodes.tool_executor import backend_simulator
    from runner.layout import load_toolset

    tools = {t.name: t for t in load_toolset(prepared)}
    get_book = tools["get_book"]
    world = SimulatedWorld(reference_time=reference_time_for(3))
    bad = json.dumps({"result": {"book_id": "not-a-number", "name": 5}})
    good = json.dumps({"result": {"book_id": 42, "name": "Dune", "status": "active",
                                  "created_at": "2025-05-01T10:00"}})
    model = ScriptedChatModel(responses=[bad, good])
    backend = OpenAIBackend(Settings(backend="openai", parse_retries=1), chat_model=model)
    request = SimulationRequest(tool=get_book, arguments={"book_id": 42}, messages=[],
                                reference_time=world.reference_time, world=world, rng_key="k")
    value, _ = asyncio.run(backend.simulate_tool(request))
    assert value["name"] == "Dune" and not validation_error(get_book, value)
    assert "does not match the output schema" in model.calls[1][-1].text  # the mismatch was fed back

    register_backend("off-schema", OpenAIBackend(Settings(backend="openai", parse_retries=1),
                                                 chat_model=ScriptedChatModel(responses=[bad] * 4)))
    state = DialogueState(dialogue_id="d", source_db="", seed=3, toolset=list(tools.values()))
    runtime = SimpleNamespace(context=Settings(backend="off-schema"))
    context = CallContext(reference_time=world.reference_time, clock="2025-01-01 09:00:00", rng_key="k",
                          simulate=backend_simulator(state, runtime))
    outcome = asyncio.run(SimulatedSandbox(seed=3).call(get_book, {"book_id": 42}, context))
    result = outcome.result
    assert outcome.simulated and result.ok and result.value["book_id"] == 42
    assert not validation_error(get_book, result.value)
