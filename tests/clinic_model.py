"""A scripted stand-in for a model behind an OpenAI-compatible server, for tests and benchmarks.

It answers each of our prompts the way a competent model would, keyed on the role the prompt asks
it to play, so the real client, tool-call encoding and parsing run end to end with no network."""

from __future__ import annotations

import json

from environment.sources.sqlite.derive import derive_tools
from environment.sources.sqlite.introspect import inspect_database
from tests.roles import request_text, role_of_request

USER_SCRIPT = [
    {"user_message": "Hi, can you find the owner whose last name is Garcia?", "is_task_complete": False},
    {"user_message": "Thanks. Which city do they live in?", "is_task_complete": False},
    {"user_message": "Great, that's all I needed!", "is_task_complete": True},
]


class ClinicModel:
    """Answers each of our prompts the way a competent model would, keyed on the role it is asked to play."""

    def __init__(self, database) -> None:
        tools = [t.model_dump(include={"name", "description", "parameters", "sql", "mode", "kind", "table"})
                 for t in derive_tools(inspect_database(database), max_tools=30)]
        self.param = next(iter(tools[0]["parameters"]["properties"]))
        broken = dict(tools[0], name="lookup_broken", sql=tools[0]["sql"].replace(f":{self.param}", ":id"))
        self.proposals = [*tools, broken, {"name": "no sql at all"}]

    def __call__(self, request: dict) -> dict | str:
        if request.get("tools"):
            return self.assistant(request)
        role, text = role_of_request(request), request_text(request)
        if role == "tool_synthesizer":
            return json.dumps({"tools": self.proposals})
        if role == "tool_repair":
            fixed = dict(self.proposals[-2], sql=self.proposals[-2]["sql"].replace(":id", f":{self.param}"))
            return "Here is the fix:\n```json\n" + json.dumps(fixed) + "\n```"
        if role == "task_generator":
            return json.dumps({
                "goal": "A receptionist wants to find the owner with last name Garcia and check their city.",
                "difficulty": "easy",
                "subtasks": [{"description": "Find the owner named Garcia.", "ask": "find Garcia",
                              "steps": [[{"tool": "search_owners_by_last_name", "arguments": {"last_name": "Garcia"}}]],
                              "answer_fields": ["first_name"]},
                             {"description": "Confirm their city.", "ask": "which city?",
                              "steps": [[{"tool": "search_owners_by_last_name", "arguments": {"last_name": "Garcia"}}]],
                              "answer_fields": ["city"]}],
                "rubric": {"success_criteria": ["The owner's record is shown"],
                           "expected_tool_pattern": ["search_owners_by_last_name(last_name='Garcia')"],
                           "checkpoints": ["owner found"]}})
        if role == "user_simulator":
            # the next line of the script: the first one the transcript does not show yet
            said = sum(turn["user_message"] in text.split("What you want", 1)[-1].split("How to behave", 1)[-1]
                       for turn in USER_SCRIPT)
            return json.dumps(USER_SCRIPT[min(said, len(USER_SCRIPT) - 1)])
        if role == "validator":
            return json.dumps({"judgment": "valid", "reasoning": "The owner was found with a real lookup.",
                               "premature_completion": False,
                               "items": [{"text": "owner found", "category": "Critical", "met": True}]})
        raise AssertionError(f"unexpected role {role}: {text[:200]}")

    def assistant(self, request: dict) -> dict:
        last = request["messages"][-1]
        if last["role"] == "user" and "that's all" in str(last.get("content")).lower():
            return {"content": "You're welcome!"}
        if last["role"] == "tool":
            rows = json.loads(last["content"]).get("rows") or [{}]
            first = rows[0]
            return {"content": f"I found {first.get('first_name')} {first.get('last_name')} in {first.get('city')}."}
        return {"tool_calls": [{"function": {"name": "search_owners_by_last_name",
                                             "arguments": json.dumps({"last_name": "Garcia"})}}]}


