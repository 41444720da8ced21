"""The LLM path end to end, with no network: the real ChatOpenAI client against a local
OpenAI-compatible stub server, through the CLI, the graph, the tool sandbox and the run folder."""

from __future__ import annotations

import json
import threading

from environment.derive import derive_tools
from environment.introspect import inspect_database
from graphs.run import main
from tests.conftest import CLINIC
from tests.stub_server import StubServer


def _text(request: dict) -> str:
    return "\n".join(str(m.get("content") or "") for m in request["messages"])


class ClinicModel:
    """Answers each of our prompts the way a competent model would, keyed on the role it is asked to play."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.user_turns = 0
        tools = [t.model_dump(include={"name", "description", "parameters", "sql", "mode", "kind", "table"})
                 for t in derive_tools(inspect_database(CLINIC), max_tools=30)]
        self.param = next(iter(tools[0]["parameters"]["properties"]))
        broken = dict(tools[0], name="lookup_broken", sql=tools[0]["sql"].replace(f":{self.param}", ":id"))
        self.proposals = [*tools, broken, {"name": "no sql at all"}]

    def __call__(self, request: dict) -> dict | str:
        text = _text(request)
        if request.get("tools"):
            return self.assistant(request)
        if "You design the tool interface" in text:
            return json.dumps({"tools": self.proposals})
        if "was refused by the checks" in text:
            fixed = dict(self.proposals[-2], sql=self.proposals[-2]["sql"].replace(":id", f":{self.param}"))
            return "Here is the fix:\n```json\n" + json.dumps(fixed) + "\n```"
        if "You write goals for a simulated user" in text:
            return json.dumps({
                "goal": "A receptionist wants to find the owner with last name Garcia and check their city.",
                "difficulty": "easy",
                "subtasks": [{"description": "Find the owner named Garcia.", "ask": "find Garcia"},
                             {"description": "Confirm their city.", "ask": "which city?"}],
                "rubric": {"success_criteria": ["The owner's record is shown"],
                           "expected_tool_pattern": ["search_owners_by_last_name(last_name='Garcia')"],
                           "checkpoints": ["owner found"]}})
        if "You play a person" in text:
            with self.lock:
                turn, self.user_turns = self.user_turns % 3, self.user_turns + 1
            return json.dumps([
                {"user_message": "Hi, can you find the owner whose last name is Garcia?", "is_task_complete": False},
                {"user_message": "Thanks. Which city do they live in?", "is_task_complete": False},
                {"user_message": "Great, that's all I needed!", "is_task_complete": True},
            ][turn])
        if "You review one finished conversation" in text:
            return json.dumps({"judgment": "valid", "reasoning": "The owner was found with a real lookup.",
                               "premature_completion": False,
                               "items": [{"text": "owner found", "category": "Critical", "met": True}]})
        raise AssertionError(f"unexpected prompt: {text[:200]}")

    def assistant(self, request: dict) -> dict:
        last = request["messages"][-1]
        if last["role"] == "tool":
            rows = json.loads(last["content"]).get("rows") or [{}]
            first = rows[0]
            return {"content": f"I found {first.get('first_name')} {first.get('last_name')} in {first.get('city')}."}
        return {"tool_calls": [{"function": {"name": "search_owners_by_last_name",
                                             "arguments": json.dumps({"last_name": "Garcia"})}}]}


def test_generate_through_a_local_openai_compatible_server(tmp_path):
    model = ClinicModel()
    out = tmp_path / "llm-run"
    with StubServer(model) as server:
        code = main(["generate", "--db", str(CLINIC), "--dialogues", "2", "--tasks-per-dialogue", "1",
                     "--base-url", server.base_url, "--model", "stub-model", "--concurrency", "1", "--out", str(out)])
        requests = list(server.requests)
    assert code == 0
    report = json.loads((out / "toolset_report.json").read_text())
    assert report["repaired"] == 1, "the broken proposal is repaired once with the error fed back"
    assert [d["name"] for d in report["dropped"]] == ["no sql at all"]
    assert all(t["origin"] == "model" for t in report["tools"])

    records = [json.loads(line) for line in (out / "dialogues.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        assert record["metadata"]["backend"] == "openai" and record["metadata"]["model"] == "stub-model"
        assert record["metadata"]["usage"]["completion_tokens"] > 0
        tool_messages = [json.loads(m["content"]) for m in record["messages"] if m["role"] == "tool"]
        assert tool_messages and all(t["rows"][0]["last_name"] == "Garcia" for t in tool_messages)
        assert sum(m["role"] == "user" for m in record["messages"]) == 3
    # the assistant was offered our tools in OpenAI wire format
    with_tools = [r for r in requests if r.get("tools")]
    assert with_tools and with_tools[0]["tools"][0]["type"] == "function"
    stats = json.loads((out / "stats.json").read_text())
    assert stats["tokens_per_second"] and stats["tokens_per_second"] > 0


def test_a_model_that_never_returns_valid_json_is_a_clean_rejection(tmp_path):
    class Broken(ClinicModel):
        def __call__(self, request):
            if "You play a person" in _text(request):
                return "I would rather not answer in JSON."
            return super().__call__(request)

    out = tmp_path / "broken-run"
    with StubServer(Broken()) as server:
        code = main(["generate", "--db", str(CLINIC), "--dialogues", "2", "--tasks-per-dialogue", "1",
                     "--base-url", server.base_url, "--model", "stub-model", "--out", str(out)])
    assert code == 0
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == 2
    assert all("BackendOutputError" in r["reason"] for r in rejected)


def test_a_weak_model_still_yields_a_usable_toolset(tmp_path, caplog):
    class Weak(ClinicModel):
        def __init__(self):
            super().__init__()
            self.proposals = [p for p in self.proposals if p.get("name") == "search_owners_by_last_name"]

    out = tmp_path / "weak-run"
    with StubServer(Weak()) as server:
        code = main(["generate", "--db", str(CLINIC), "--dialogues", "1", "--tasks-per-dialogue", "1",
                     "--base-url", server.base_url, "--model", "stub-model", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "toolset_report.json").read_text())
    assert report["completed_from_schema"] and "completing the toolset" in report["notes"][0]
    origins = {t["origin"] for t in report["tools"]}
    assert origins == {"model", "schema"}
    assert any(t["mode"] == "write" for t in report["tools"])
