"""What keeps a grammar-constrained small model from writing one JSON string until the token limit:
bounds on every open string and list of a schema sent to the server, and feedback when a reply was
cut off at the length limit."""

from __future__ import annotations

import asyncio

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from backends.llm import structured
from backends.llm.reply_models import TaskReply, parse_user_turn, schema_of
from backends.llm.backend import OpenAIBackend
from state.config import Settings
from state.dialogue import UserTurn
from tests.fakes import ScriptedChatModel


def test_open_strings_and_lists_get_bounds_and_closed_ones_keep_theirs():
    schema = {"type": "object", "properties": {
        "note": {"type": "string"},
        "sql": {"type": "string"},
        "kind": {"type": "string", "enum": ["a", "b"]},
        "short": {"type": "string", "maxLength": 5},
        "tags": {"type": "array", "items": {"type": "string"}},
        "tools": {"type": "array", "items": {"type": "object"}},
        "many": {"type": "array", "minItems": 30, "items": {"type": ["string", "null"]}},
    }}
    out = structured.bounded(schema)["properties"]
    assert out["note"]["maxLength"] == structured.MAX_STRING
    assert out["sql"]["maxLength"] > structured.MAX_STRING  # a query needs more room than a sentence
    assert "maxLength" not in out["kind"] and out["short"]["maxLength"] == 5
    assert out["tags"]["maxItems"] == structured.MAX_ITEMS and out["tags"]["items"]["maxLength"]
    assert out["tools"]["maxItems"] > structured.MAX_ITEMS
    assert out["many"]["maxItems"] == 30 and out["many"]["items"]["maxLength"]  # never below minItems
    assert "maxLength" not in schema["properties"]["note"]  # the caller's schema is left as it was


def test_every_string_of_a_reply_model_sent_to_the_server_is_bounded():
    def strings(node):
        if isinstance(node, dict):
            if node.get("type") == "string" and "enum" not in node:
                yield node
            for value in node.values():
                yield from strings(value)
        elif isinstance(node, list):
            for value in node:
                yield from strings(value)

    for model in (UserTurn, TaskReply):
        found = list(strings(schema_of(model)))
        assert found and all("maxLength" in s for s in found)
    # replies are read by the model itself, which has no such bound: a longer reply is still taken
    assert parse_user_turn({"user_message": "x" * 5000}).user_message == "x" * 5000


def test_a_reply_cut_off_at_the_length_limit_is_fed_back_as_such():
    cut = AIMessage(content='{"user_message": "Hello, I would like to know which pets', 
                    response_metadata={"finish_reason": "length"})
    model = ScriptedChatModel(responses=[cut, '{"user_message": "Which pets does owner 4 have?"}'])
    backend = OpenAIBackend(Settings(backend="openai"), chat_model=model)
    turn, usage = asyncio.run(backend.caller.ask_json(
        "user_simulator", [SystemMessage(content="You play a person."), HumanMessage(content="Go.")],
        parse_user_turn, UserTurn))
    assert turn.user_message == "Which pets does owner 4 have?" and usage.parse_failures == 1
    feedback = model.calls[1][-1].content
    assert "cut off at the length limit" in feedback
    sent = model.call_kwargs[0]["response_format"]
    assert sent["json_schema"]["schema"]["properties"]["user_message"]["maxLength"] == structured.MAX_STRING
