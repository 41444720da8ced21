"""A toolset the offline backend can make no task from stops the run before it starts: one line naming what
the tools lack, exit 2, no run folder; tools it can chain still run."""

from __future__ import annotations

import json

from backends.offline.tasks import task_shortfall
from graphs.run import main
from state.tools import Tool

WEATHER = {"name": "get_weather", "description": "Today's weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
           "source": "simulated", "mode": "read", "kind": "other", "table": "", "origin": "seed",
           "output_schema": {"type": "object", "properties": {"summary": {"type": "string"}}}}


def test_a_toolset_without_a_task_in_it_is_one_line_exit_2_and_no_folder(tmp_path, capsys):
    toolset = tmp_path / "toolset.json"
    toolset.write_text(json.dumps([WEATHER]))
    out = tmp_path / "run"
    code = main(["generate", "--toolset", str(toolset), "--dialogues", "2", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "get_weather" in err, err
    assert "lookup" in err and "no task" in err, "the line says what the tools lack"
    assert not out.exists(), "no run folder is left"


def test_tools_that_chain_are_no_shortfall():
    tools = [Tool.model_validate({**WEATHER, "name": name, "parameters": params, "kind": kind, "table": "city"})
             for name, kind, params in [
                 ("search_cities", "search", {"type": "object", "properties": {"query": {"type": "string"}},
                                              "required": ["query"]}),
                 ("get_city", "lookup", {"type": "object", "properties": {"city_id": {"type": "integer"}},
                                         "required": ["city_id"]}),
                 ("update_city", "update", {"type": "object", "properties": {"city_id": {"type": "integer"},
                                                                              "name": {"type": "string"}},
                                            "required": ["city_id", "name"]})]]
    assert task_shortfall(tools, None) is None
    assert "no entity" in task_shortfall(tools[:1], None)


def test_the_llm_task_prompt_and_the_assistant_see_the_values_and_paths_a_source_holds():
    from prompts.render import render_known_values, sandbox_paths_line

    read = Tool.model_validate({**WEATHER, "name": "files__read_text_file", "source": "mcp", "parameters": {
        "type": "object", "required": ["path"],
        "properties": {"path": {"type": "string", "examples": ["files/notes/todo.txt", "files/README.md"]}}}})
    assert "files__read_text_file.path: \"files/notes/todo.txt\"" in render_known_values([read])
    assert "files/README.md" in sandbox_paths_line([read])
    plain = Tool.model_validate(WEATHER)
    assert render_known_values([plain]) == "" and sandbox_paths_line([plain]) == "", "other tools: prompts unchanged"
