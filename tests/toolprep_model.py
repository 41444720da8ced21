"""A scripted model for tool preparation that answers each request by its role (tests/roles.py), not by the
wording of its prompt: a type conflict, a stage that never parses, and an output schema that needs repair."""

from __future__ import annotations

import json
from typing import Any

from tests.roles import role_of_request, role_of_text
from tests.stub_server import content_text

SEEDS = [
    {"type": "function", "function": {"name": "get_user", "description": "Get a user profile by id.", "parameters": {
        "type": "object", "properties": {"user_id": {"type": "integer", "description": "Id of the user."}},
        "required": ["user_id"]}}},
    {"name": "search_books", "description": "Search the catalogue.", "parameters": {
        "type": "dict", "properties": {"query": {"type": "string", "description": "Words to look for."},
                                       "max_price": {"type": "float", "description": "Upper price bound."}},
        "required": ["query"]}},
    {"name": "create_order", "description": "Place an order for a book.", "parameters": {
        "type": "object", "properties": {"user_id": {"type": "integer", "description": "Buyer."},
                                         "book_id": {"type": "integer", "description": "Book to buy."},
                                         "quantity": {"type": "integer", "description": "How many."}},
        "required": ["user_id", "book_id"]}},
]


def prep_model(texts: list[str]) -> str:
    """The reply to a toolprep request whose messages have these texts."""
    role, last = role_of_text(texts[0]), texts[-1]
    if role == "tool_questions":
        return json.dumps({"questions": [{"text": "Show the account of user 7.", "complexity": "simple"},
                                         {"text": "List the orders of user 7.", "complexity": "simple"},
                                         {"text": "Something odd.", "complexity": "edge_case"}]})
    if role == "tool_designer":
        if "account of user" in last:
            return json.dumps({"tools": [{"name": "get_account", "description": "Account of a user.", "parameters": {
                "type": "object", "properties": {"user_id": {"type": "integer"}}, "required": ["user_id"]}}]})
        if "orders of user" in last:  # the conflict: user_id as a string here
            return json.dumps({"tools": [{"name": "list_user_orders", "description": "Orders of a user.",
                                          "parameters": {"type": "object", "properties": {"user_id": {"type": "string"}},
                                                         "required": ["user_id"]}}]})
        return "I cannot design tools for that."  # malformed every time: retried, then dropped
    if role == "tool_expansion":
        return json.dumps({"tools": []})
    if role == "output_schema":
        # the last ask is one tool's spec, then any feedback on the schema given for it before
        spec, _, feedback = next(t for t in reversed(texts) if t.startswith("{")).partition("\n\n")
        item = {"type": "object", "properties": {"user_id": {"type": "integer" if feedback else "string"},
                                                 "total": {"type": "number"}}}
        if json.loads(spec).get("name") == "list_user_orders":
            return json.dumps({"type": "array", "items": item})
        return json.dumps({"type": "object", "properties": {"user_id": {"type": "integer"},
                                                            "balance": {"type": "number"}}})
    raise AssertionError(f"unexpected role {role}: {texts[0][:200]}")


def prep_model_of_request(request: dict[str, Any]) -> str:
    """The same model behind a chat-completions server (tests/stub_server.py)."""
    role = role_of_request(request)
    assert role == role_of_text(content_text(request["messages"][0].get("content"))), role
    return prep_model([content_text(m.get("content")) for m in request["messages"]])
