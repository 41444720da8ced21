"""The OpenAI-compatible backend: JSON parsing with feedback retries (scripted fake model), and the
wire format, HTTP retries and token usage through a local stub server with the real ChatOpenAI."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from backends.protocols import (AssistantRequest, JudgeRequest, TaskRequest, ToolProposalRequest, ToolRepairRequest,
                                UserTurnRequest)
from backends.llm.replies import BackendOutputError, ReplyError, extract_json_object
from backends.llm.backend import OpenAIBackend
from prompts.render import render_schema
from prompts import load_prompt
from state.config import Settings
from state.dialogue import ExecutedCall, Usage, UserTurn, Verdict
from state.schema import Column, DatabaseSchema, ForeignKey, Table
from state.tasks import Rubric, RubricItem, Subtask, Task
from state.tools import Tool, ToolResult

try:  # tests/ is a plain directory: pytest puts it on sys.path; from the project root `tests.` works too
    from tests.fakes import ScriptedChatModel, ScriptExhausted
    from tests.stub_server import ScriptedResponder, StubServer
except ImportError:
    from fakes import ScriptedChatModel, ScriptExhausted
    from stub_server import ScriptedResponder, StubServer

ROOT = Path(__file__).resolve().parents[1]


def run(coro, backend: OpenAIBackend | None = None):
    """Run a coroutine on a fresh event loop; close the backend's connections of that loop after it."""
    async def main():
        try:
            return await coro
        finally:
            if backend is not None:
                await backend.aclose()

    return asyncio.run(main())


def settings(**overrides) -> Settings:
    values = dict(backend="openai", model="stub-model", base_url="http://127.0.0.1:9/v1", api_key="test-key",
                  temperature=0.0, request_timeout=2.0, http_retries=1, parse_retries=2)
    return Settings(**{**values, **overrides})


def fake_backend(*replies, **overrides) -> tuple[OpenAIBackend, ScriptedChatModel]:
    model = ScriptedChatModel(responses=list(replies))
    return OpenAIBackend(settings(**overrides), chat_model=model), model


@pytest.fixture(scope="module")
def database() -> DatabaseSchema:
    owners = Table(
        name="owners", row_count=60, key_assigned_on_insert=True,
        columns=[Column(name="owner_id", declared_type="INTEGER", json_type="integer", pk_position=1, unique=True),
                 Column(name="last_name", declared_type="TEXT", json_type="string", not_null=True),
                 Column(name="city", declared_type="TEXT", json_type="string")],
        sample_rows=[{"owner_id": 1, "last_name": "Rossi", "city": "West Linn"},
                     {"owner_id": 2, "last_name": "Garcia", "city": None}])
    pets = Table(
        name="pets", row_count=100, key_assigned_on_insert=True,
        columns=[Column(name="pet_id", declared_type="INTEGER", json_type="integer", pk_position=1, unique=True),
                 Column(name="owner_id", declared_type="INTEGER", json_type="integer", not_null=True),
                 Column(name="name", declared_type="TEXT", json_type="string", not_null=True)],
        foreign_keys=[ForeignKey(column="owner_id", ref_table="owners", ref_column="owner_id")],
        sample_rows=[{"pet_id": 1, "owner_id": 1, "name": "Sage"}])
    return DatabaseSchema(path="/tmp/clinic.sqlite", tables=[owners, pets])


@pytest.fixture(scope="module")
def tools() -> list[Tool]:
    return [
        Tool(name="search_owners", description="Find owners by last name.", mode="read", kind="search",
                table="owners", sql='SELECT * FROM owners WHERE last_name LIKE :last_name',
                parameters={"type": "object", "properties": {"last_name": {"type": "string"}},
                            "required": ["last_name"]}),
        Tool(name="list_pets_for_owner", description="The pets of one owner.", mode="read", kind="join",
                table="pets", sql="SELECT * FROM pets WHERE owner_id = :owner_id",
                parameters={"type": "object", "properties": {"owner_id": {"type": "integer"},
                                                             "limit": {"type": "integer"}},
                            "required": ["owner_id"]}),
    ]


@pytest.fixture(scope="module")
def task() -> Task:
    return Task(goal="Rafael Garcia wants to know which pets are on file for him.", difficulty="easy",
                subtasks=[Subtask(description="Find the owner record of Rafael Garcia.",
                                  ask="Can you find me? I'm Garcia."),
                          Subtask(description="List his pets.", ask="Which pets do I have registered?")],
                rubric=Rubric(success_criteria=["The pets of owner 2 are listed."],
                              expected_tool_pattern=["search_owners(last_name=<surname>)"],
                              checkpoints=["The owner id is found."],
                              items=[RubricItem(text="Owner is looked up", tool="search_owners",
                                                arguments={"last_name": "Garcia"})]))


def conversation() -> list:
    call = {"name": "search_owners", "args": {"last_name": "Garcia"}, "id": "call_1", "type": "tool_call"}
    return [
        HumanMessage(content="Hi, I'm Rafael Garcia. Can you find my record?"),
        AIMessage(content="", tool_calls=[call]),
        ToolMessage(content='{"rows": [{"owner_id": 2, "last_name": "Garcia"}], "row_count": 1}',
                    tool_call_id="call_1", name="search_owners"),
        AIMessage(content="You are owner 2, Rafael Garcia."),
    ]


def executed() -> list[ExecutedCall]:
    return [ExecutedCall(tool_call_id="call_1", tool="search_owners", arguments={"last_name": "Garcia"},
                         result=ToolResult(ok=True, rows=[{"owner_id": 2, "last_name": "Garcia"}], row_count=1))]


VERDICT = {"judgment": "valid", "reasoning": "The owner was found from a tool result.", "premature_completion": False,
           "items": [{"text": "Owner is looked up", "category": "Critical", "met": True, "note": ""}]}


# ---------------------------------------------------------------- JSON extraction

def test_a_raw_newline_inside_a_string_still_parses():
    """llama.cpp's JSON grammar lets a small model put a raw newline or tab inside a string."""
    assert extract_json_object('{"user_message": "Hi,\nI need\tthe list", "is_task_complete": false}')[0] == {
        "user_message": "Hi,\nI need\tthe list", "is_task_complete": False}


@pytest.mark.parametrize("text", [
    '{"a": 1}',
    'Sure! Here it is:\n```json\n{"a": 1}\n```\nAnything else?',
    '```\n{"a": 1}\n```',
    '<think>maybe {"a": 2}? no.</think>{"a": 1}',
    'Fill in {placeholders} like this: {"a": 1} and done.',
])
def test_extract_json_object_finds_the_first_object(text):
    assert extract_json_object(text)[0] == {"a": 1}


def test_extract_json_object_reports_what_is_wrong():
    with pytest.raises(ReplyError, match="no JSON object"):
        extract_json_object("I cannot help with that.")
    with pytest.raises(ReplyError, match="not valid JSON: Expecting"):
        extract_json_object('{"user_message": "hi", ')


# ---------------------------------------------------------------- (a) every role parses into our models

def test_propose_tools_parses_the_tool_list_and_renders_the_schema(database):
    proposed = [{"name": f"tool_{i}", "description": "d", "parameters": {"type": "object", "properties": {}},
                 "sql": "SELECT 1", "mode": "read", "kind": "other", "table": "owners"} for i in range(3)]
    backend, model = fake_backend("Here you go:\n```json\n" + json.dumps({"tools": proposed}) + "\n```")
    tools, usage = run(backend.propose_tools(ToolProposalRequest(database=database, max_tools=2)))
    assert tools == proposed[:2]  # never more than max_tools
    assert usage.llm_calls == 1 and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    prompt = model.calls[0][0].text
    assert "Propose up to 2 tools" in prompt
    assert "Table owners (60 rows)" in prompt
    assert "owner_id INTEGER PRIMARY KEY" in prompt and "last_name TEXT NOT NULL" in prompt
    assert "foreign key: owner_id -> owners.owner_id" in prompt
    assert '[2, "Garcia", null]' in prompt  # the data view, one JSON array per row


def test_render_schema_is_compact(database):
    text = render_schema(database)
    assert text.count("\n") < 20
    assert '["owner_id", "last_name", "city"]' in text


def test_repair_tool_returns_the_fixed_tool(database):
    fixed = {"name": "search_owners", "description": "d", "parameters": {"type": "object", "properties": {}},
             "sql": "SELECT * FROM owners", "mode": "read"}
    backend, model = fake_backend(json.dumps({"tool": fixed}))
    tool, usage = run(backend.repair_tool(ToolRepairRequest(database=database, tool={"name": "search_owners"},
                                                            error="no such column: lastname")))
    assert tool == fixed and usage.llm_calls == 1
    assert "no such column: lastname" in model.calls[0][0].text


def test_repair_tool_gives_none_when_no_reply_parses(database):
    backend, model = fake_backend("sorry", "still no", '{"description": "no name, no sql"}', parse_retries=2)
    tool, usage = run(backend.repair_tool(ToolRepairRequest(database=database, tool={}, error="x")))
    assert tool is None
    assert usage.llm_calls == 3 == len(model.calls)


def test_generate_task_forces_difficulty_and_relation_and_describes_earlier_tasks(database, tools, task):
    reply = {"goal": "Rafael Garcia wants to add a new pet.", "difficulty": "easy",
             "subtasks": [{"description": "Find his owner id.", "ask": "What's my id?"}, "Add a cat named Miso."],
             "rubric": {"success_criteria": ["A pet is added."], "expected_tool_pattern": ["add_pet(owner_id=<id>)"],
                        "checkpoints": ["The owner id is known."]}}
    backend, model = fake_backend(json.dumps(reply))
    request = TaskRequest(database=database, tools=tools, difficulty="hard", relation="extends",
                          previous_tasks=[task], previous_calls=executed(), rng_key="k")
    result, usage = run(backend.generate_task(request))
    assert isinstance(result, Task)
    assert result.difficulty == "hard" and result.relation == "extends"
    assert [s.description for s in result.subtasks] == ["Find his owner id.", "Add a cat named Miso."]
    assert result.subtasks[1].ask == "Add a cat named Miso."
    assert result.rubric.expected_tool_pattern == ["add_pet(owner_id=<id>)"]
    prompt = model.calls[0][0].text
    assert "Write one hard task" in prompt
    assert "- list_pets_for_owner(owner_id, limit?): The pets of one owner." in prompt
    assert "1. Rafael Garcia wants to know which pets are on file for him." in prompt
    assert 'search_owners({"last_name": "Garcia"}) -> 1 row(s), first: {"owner_id": 2' in prompt
    assert "extends them" in prompt


def test_generate_task_first_task_has_no_history(database, tools):
    backend, model = fake_backend(json.dumps({"goal": "g", "subtasks": [{"description": "s"}]}))
    result, _ = run(backend.generate_task(TaskRequest(database=database, tools=tools, difficulty="easy",
                                                      relation="first", rng_key="k")))
    assert result.relation == "first" and result.difficulty == "easy"
    assert "This is the first task of a new conversation." in model.calls[0][0].text


def test_generate_task_of_a_targeted_run_asks_for_its_aim(database, tools):
    from state.targeting import TaskAim

    backend, model = fake_backend(json.dumps({"goal": "g", "subtasks": [{"description": "s"}]}))
    aim = TaskAim(writes=True, subtasks=3, tool="add_pet")
    run(backend.generate_task(TaskRequest(database=database, tools=tools, difficulty="medium", relation="first",
                                          rng_key="k", aim=aim)))
    prompt = model.calls[0][0].text
    assert "it must ask for a change to the data" in prompt and "exactly 3 subtasks" in prompt
    assert "its plan uses the tool add_pet" in prompt


def test_user_turn_sees_goal_subtasks_and_every_tool_call(task):
    backend, model = fake_backend('{"user_message": "Great, which pets do I have?", "is_task_complete": false}')
    request = UserTurnRequest(task=task, messages=conversation(), task_start=0, user_turn=1,
                              reminder="Do not end yet.", rng_key="k")
    turn, usage = run(backend.user_turn(request))
    assert turn == UserTurn(user_message="Great, which pets do I have?", is_task_complete=False)
    system, human = model.calls[0]
    assert isinstance(system, SystemMessage) and isinstance(human, HumanMessage)
    assert task.goal in system.text
    assert '1. Find the owner record of Rafael Garcia. (you might say: "Can you find me? I\'m Garcia.")' in system.text
    assert "The conversation is under way" in system.text and "Do not end yet." in system.text
    assert "You: Hi, I'm Rafael Garcia." in human.text
    assert 'Assistant calls search_owners({"last_name": "Garcia"})' in human.text
    assert 'Result of search_owners: {"rows": [{"owner_id": 2' in human.text
    assert "Assistant: You are owner 2, Rafael Garcia." in human.text


@pytest.mark.parametrize("task_start,user_turn,expected", [
    (0, 0, "first message of the conversation"),
    (4, 0, "first message of a new request"),
])
def test_user_turn_opening_line(task, task_start, user_turn, expected):
    backend, model = fake_backend('{"user_message": "Hello!"}')
    messages = conversation()[:task_start]
    run(backend.user_turn(UserTurnRequest(task=task, messages=messages, task_start=task_start,
                                          user_turn=user_turn, rng_key="k")))
    system, human = model.calls[0]
    assert expected in system.text
    if task_start:
        assert human.text.rstrip().endswith("your current goal starts below ---\n\nWrite your next message.")
    else:
        assert "has not started yet" in human.text


def test_assistant_turn_binds_our_tools_and_passes_messages_through(tools):
    reply = AIMessage(content="", tool_calls=[{"name": "list_pets_for_owner", "args": {"owner_id": 2},
                                               "id": "call_2", "type": "tool_call"}])
    backend, model = fake_backend(reply)
    history = conversation()[:3]
    message, usage = run(backend.assistant_turn(AssistantRequest(tools=tools, messages=history, rng_key="k")))
    assert isinstance(message, AIMessage)
    assert message.tool_calls[0]["args"] == {"owner_id": 2} and message.tool_calls[0]["id"] == "call_2"
    assert model.bound_tools == [[t.openai_tool() for t in tools]]
    assert model.call_kwargs[0]["tools"] == [t.openai_tool() for t in tools]
    sent = model.calls[0]
    assert isinstance(sent[0], SystemMessage) and sent[0].text == load_prompt("assistant").text
    assert sent[1:] == history
    assert usage.llm_calls == 1 and usage.prompt_tokens > 0


def test_assistant_turn_without_tools_when_the_budget_is_spent(tools):
    backend, model = fake_backend("Here is what I have so far.")
    message, _ = run(backend.assistant_turn(AssistantRequest(tools=tools, messages=conversation()[:3],
                                                             allow_tools=False, rng_key="k")))
    assert message.text == "Here is what I have so far."
    assert model.bound_tools == [] and "tools" not in model.call_kwargs[0]


def test_judge_parses_the_verdict_and_sees_the_rubric_and_transcript(task):
    reply = {**VERDICT, "items": [*VERDICT["items"], {"text": "Polite tone", "category": "Non-Critical", "met": None}]}
    backend, model = fake_backend(json.dumps(reply))
    verdict, usage = run(backend.judge(JudgeRequest(task=task, messages=conversation(), calls=executed(),
                                                    user_declared_complete=True, task_index=3)))
    assert isinstance(verdict, Verdict)
    assert verdict.judgment == "valid" and verdict.task_index == 3
    assert [i.category for i in verdict.items] == ["Critical", "NonCritical"]
    prompt = model.calls[0][0].text
    assert '- [Critical] Owner is looked up (expects search_owners({"last_name": "Garcia"}))' in prompt
    assert "Success criteria:\n- The pets of owner 2 are listed." in prompt
    assert "Expected tool-use pattern:\n- search_owners(last_name=<surname>)" in prompt
    assert "Checkpoints:\n- The owner id is found." in prompt
    assert 'Assistant calls search_owners({"last_name": "Garcia"})' in prompt
    assert 'Result of search_owners: {"rows"' in prompt
    assert "(The user then declared the goal complete.)" in prompt


def test_judge_keeps_the_hard_rules(task):
    unmet = {**VERDICT, "items": [{"text": "Pets listed", "category": "Critical", "met": False}]}
    backend, _ = fake_backend(json.dumps(unmet), json.dumps({**VERDICT, "premature_completion": True}))
    verdict, _ = run(backend.judge(JudgeRequest(task=task, messages=conversation(), calls=executed(),
                                                user_declared_complete=True)))
    assert verdict.judgment == "invalid" and verdict.premature_completion
    cut_off, _ = run(backend.judge(JudgeRequest(task=task, messages=conversation(), calls=executed(),
                                                user_declared_complete=False, ended_by_budget=True)))
    assert cut_off.judgment == "invalid" and not cut_off.premature_completion


# ---------------------------------------------------------------- (b) and (c) feedback retries

def test_malformed_json_is_fed_back_and_retried_once(task):
    bad = '{"user_message": "Which pets do I have?", '
    good = '{"user_message": "Which pets do I have?", "is_task_complete": false}'
    backend, model = fake_backend(bad, good)
    turn, usage = run(backend.user_turn(UserTurnRequest(task=task, messages=conversation(), task_start=0,
                                                        user_turn=1, rng_key="k")))
    assert turn.user_message == "Which pets do I have?"
    assert len(model.calls) == 2 and model.remaining == 0
    first, second = model.calls
    assert second[:len(first)] == first
    assert isinstance(second[-2], AIMessage) and second[-2].text == bad
    feedback = second[-1]
    assert isinstance(feedback, HumanMessage)
    assert "not valid JSON" in feedback.text and "corrected JSON object only" in feedback.text
    assert usage.llm_calls == 2
    assert usage.prompt_tokens == sum(sum(len(m.text) // 4 + 1 for m in call) for call in model.calls)


@pytest.mark.parametrize("role,reply,field", [
    ("user_simulator", {"is_task_complete": False}, "user_message"),
    ("validator", {**VERDICT, "judgment": "maybe"}, "judgment"),
    ("task_generator", {"subtasks": []}, "goal"),
])
def test_schema_violations_raise_after_the_retries(role, reply, field, task, database, tools):
    backend, model = fake_backend(*[json.dumps(reply)] * 3, parse_retries=2)
    call = {
        "user_simulator": lambda: backend.user_turn(UserTurnRequest(task=task, messages=[], task_start=0,
                                                                    user_turn=0, rng_key="k")),
        "validator": lambda: backend.judge(JudgeRequest(task=task, messages=conversation(), calls=executed(),
                                                        user_declared_complete=True)),
        "task_generator": lambda: backend.generate_task(TaskRequest(database=database, tools=tools,
                                                                    difficulty="easy", relation="first", rng_key="k")),
    }[role]
    with pytest.raises(BackendOutputError) as info:
        run(call())
    error = info.value
    assert error.role == role and error.attempts == 3 and len(model.calls) == 3
    assert field in error.last_error and field in str(error)
    assert error.usage.llm_calls == 3
    assert field in model.calls[-1][-1].text  # the last request quoted the error back


def test_parse_retries_zero_means_one_call(task):
    backend, model = fake_backend("nope", "never used", parse_retries=0)
    with pytest.raises(BackendOutputError):
        run(backend.user_turn(UserTurnRequest(task=task, messages=[], task_start=0, user_turn=0, rng_key="k")))
    assert len(model.calls) == 1


# ---------------------------------------------------------------- the fake model itself

def test_scripted_model_structured_output_and_exhaustion():
    model = ScriptedChatModel(responses=['```json\n{"user_message": "hi"}\n```',
                                         AIMessage(content="", tool_calls=[{"name": "UserTurn", "id": "c",
                                                                            "args": {"user_message": "yo"}}]),
                                         lambda messages: f"echo {len(messages)}"])
    structured = model.with_structured_output(UserTurn)
    assert structured.invoke("x") == UserTurn(user_message="hi")
    assert structured.invoke("x") == UserTurn(user_message="yo")
    assert model.invoke([HumanMessage("a"), HumanMessage("b")]).text == "echo 2"
    with pytest.raises(ScriptExhausted):
        model.invoke("more")


# ---------------------------------------------------------------- (d)-(f) through the stub server

def stub_backend(server: StubServer, **overrides) -> OpenAIBackend:
    return OpenAIBackend(settings(base_url=server.base_url, **overrides))


def test_chat_openai_is_configured_from_the_settings():
    backend = OpenAIBackend(settings(http_retries=3, request_timeout=7.5, api_key=None))
    router = backend.caller.router
    model_name, pool = router.route("validator")
    model = run(router.chat_model(pool.endpoints[0], model_name), backend)
    assert model.max_retries == 0  # retries are the endpoint pool's, so 429s and timeouts reach its concurrency
    assert model.request_timeout == 7.5
    assert model.openai_api_key.get_secret_value() == "not-needed"
    assert model.openai_api_base == "http://127.0.0.1:9/v1" and model.model_name == "stub-model"
    assert model.use_responses_api is False


def test_a_reply_limit_reaches_servers_that_read_max_tokens(tools):
    """langchain sends only max_completion_tokens; llama.cpp's server reads max_tokens, and without it a
    grammar-constrained reply can run until the model's context is full."""
    responder = ScriptedResponder([{"content": "Hello."}], fallback=None)
    with StubServer(responder) as server:
        backend = OpenAIBackend(settings(base_url=server.base_url, max_tokens=64))
        run(backend.assistant_turn(AssistantRequest(tools=tools, messages=conversation(), rng_key="k")), backend)
    sent = server.requests[0]
    assert sent["max_tokens"] == 64 and sent["max_completion_tokens"] == 64


def test_assistant_turn_over_the_wire_decodes_tool_calls_and_sends_our_tools(tools):
    responder = ScriptedResponder([{"tool_calls": [{"name": "list_pets_for_owner", "arguments": {"owner_id": 2},
                                                    "id": "call_x"}]}], fallback=None)
    with StubServer(responder) as server:
        backend = stub_backend(server)
        message, usage = run(backend.assistant_turn(AssistantRequest(tools=tools, messages=conversation(),
                                                                     rng_key="k")), backend)
    assert isinstance(message, AIMessage)
    assert message.tool_calls == [{"name": "list_pets_for_owner", "args": {"owner_id": 2}, "id": "call_x",
                                   "type": "tool_call"}]
    assert not message.invalid_tool_calls
    sent = server.requests[0]
    assert sent["tools"] == [t.openai_tool() for t in tools]
    assert sent["model"] == "stub-model" and not sent.get("stream")
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    assert sent["messages"][2]["tool_calls"][0]["function"] == {"name": "search_owners",
                                                                 "arguments": '{"last_name": "Garcia"}'}
    assert sent["messages"][3]["tool_call_id"] == "call_1"
    assert usage.llm_calls == 1


def test_structured_role_over_the_wire(task):
    responder = ScriptedResponder(["Sure.\n```json\n" + json.dumps(VERDICT) + "\n```"], fallback=None)
    with StubServer(responder) as server:
        backend = stub_backend(server)
        verdict, _ = run(backend.judge(JudgeRequest(task=task, messages=conversation(), calls=executed(),
                                                    user_declared_complete=True)), backend)
    assert verdict.judgment == "valid" and server.request_count == 1
    assert "tools" not in server.requests[0]


@pytest.mark.parametrize("status", [429, 500])
def test_http_failure_is_retried_by_the_client(task, status):
    with StubServer(ScriptedResponder(['{"user_message": "Hello!"}'], fallback=None), fail_first=1,
                    fail_status=status) as server:
        backend = stub_backend(server, http_retries=1, max_in_flight=8)
        turn, usage = run(backend.user_turn(
            UserTurnRequest(task=task, messages=[], task_start=0, user_turn=0, rng_key="k")), backend)
    assert turn.user_message == "Hello!"
    assert server.request_count == 2 and server.failures_sent == 1
    assert usage.llm_calls == 1  # one logical call; the HTTP retry is the endpoint pool's business
    endpoint = backend.caller.router.endpoints[0]
    if status == 429:  # overloaded: half as many at once (then one more success adds 1/limit back)
        assert endpoint.limit == pytest.approx(4.25)
    else:  # a server error counts towards resting the endpoint; the success after it clears the count
        assert endpoint.limit == 8 and endpoint.failures_in_row == 0


def test_http_failure_without_retries_raises(task):
    with StubServer(fail_first=1) as server:
        backend = stub_backend(server, http_retries=0)
        with pytest.raises(openai.RateLimitError):
            run(backend.user_turn(UserTurnRequest(task=task, messages=[], task_start=0, user_turn=0, rng_key="k")),
                backend)
    assert server.request_count == 1


def test_request_timeout_is_applied(task):
    with StubServer(latency=0.6) as server:
        backend = stub_backend(server, http_retries=0, request_timeout=0.15)
        with pytest.raises(openai.APITimeoutError):
            run(backend.user_turn(UserTurnRequest(task=task, messages=[], task_start=0, user_turn=0, rng_key="k")),
                backend)
        assert server.in_flight == 1  # given up while the server was still working on it


def test_usage_tokens_are_counted_over_retries(task):
    replies = [{"content": "not json", "usage": {"prompt_tokens": 100, "completion_tokens": 7}},
               {"content": '{"user_message": "Hi"}', "usage": {"prompt_tokens": 130, "completion_tokens": 9}}]
    with StubServer(ScriptedResponder(replies, fallback=None)) as server:
        backend = stub_backend(server)
        turn, usage = run(backend.user_turn(
            UserTurnRequest(task=task, messages=[], task_start=0, user_turn=0, rng_key="k")), backend)
    assert turn.user_message == "Hi"
    assert usage == Usage(llm_calls=2, prompt_tokens=230, completion_tokens=16, parse_failures=1)
    assert "no JSON object" in server.requests[1]["messages"][-1]["content"]


def test_backend_survives_a_new_event_loop_and_overlaps_requests(task):
    request = UserTurnRequest(task=task, messages=[], task_start=0, user_turn=0, rng_key="k")
    with StubServer(lambda r: '{"user_message": "Hi"}', latency=0.2) as server:
        backend = stub_backend(server)
        run(backend.user_turn(request), backend)

        async def many():
            return await asyncio.gather(*(backend.user_turn(request) for _ in range(8)))

        results = run(many(), backend)  # a second asyncio.run: pooled connections of the first loop are dead
    assert [t.user_message for t, _ in results] == ["Hi"] * 8
    assert server.request_count == 9 and server.peak_in_flight > 1  # the requests overlapped


def test_stub_server_lists_models_and_answers_unknown_routes():
    with StubServer(model="m1") as server:
        with urllib.request.urlopen(server.base_url + "/models", timeout=2) as response:
            assert json.load(response)["data"][0]["id"] == "m1"
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(server.base_url + "/nothing", timeout=2)
        assert info.value.code == 404


def test_dialogue_graph_runs_end_to_end_through_the_stub():
    """The backend from the registry, driven by the graph, against the stub's default agent."""
    from backends.registry import backend_for
    from graphs.dialogue import graph
    from state.dialogue import DialogueInput

    with StubServer() as server:
        context = settings(base_url=server.base_url)
        backend = backend_for(context)
        assert isinstance(backend, OpenAIBackend)
        result = run(graph.ainvoke(DialogueInput(source_db=str(ROOT / "examples" / "clinic.sqlite"), seed=1,
                                                 tasks_per_dialogue=2).model_dump(), context=context), backend)
    assert [v.judgment for v in result["verdicts"]] == ["valid", "valid"]
    assert len(result["tasks"]) == 2 and result["tasks"][1].relation in ("extends", "independent")
    assert any(isinstance(m, ToolMessage) for m in result["messages"])
    assert all(c.result.ok for c in result["calls"])
