"""A small bank database, its tools, and a backend for planted faults: a fixed task with a reference plan, a
scripted user, a scripted fake chat model as the assistant, and a judge that approves everything."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver

from backends.protocols import AssistantRequest, JudgeRequest, TaskRequest, UserTurnRequest
from backends.offline import OfflineBackend
from backends.llm.backend import OpenAIBackend
from backends.registry import register_backend
from graphs.dialogue import build_dialogue_graph
from state.config import Settings
from state.dialogue import Usage, UserTurn, Verdict
from state.tasks import PlannedCall, ResultRef, Subtask, Task
from state.tools import Tool

try:
    from tests.fakes import ScriptedChatModel
except ImportError:
    from fakes import ScriptedChatModel

SCHEMA = """
CREATE TABLE accounts (account_id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, balance REAL NOT NULL,
                       opened_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE audit (entry_id INTEGER PRIMARY KEY, note TEXT NOT NULL);
INSERT INTO accounts (name, balance, opened_at) VALUES ('Ada', 120.5, '2024-01-02 10:00:00'),
    ('Bob', 80.0, '2024-02-03 11:00:00'), ('Cy', 15.0, '2024-03-04 12:00:00');
INSERT INTO audit (note) VALUES ('opened');
"""


def bank(folder: Path) -> Path:
    path = folder / "bank.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.commit()
    conn.close()
    return path


def _tool(tool: str, sql: str, mode: str, kind: str, table: str, **params: str) -> Tool:
    return Tool(name=tool, description=tool.replace("_", " "), sql=sql, mode=mode, kind=kind, table=table,
                parameters={"type": "object", "properties": {p: {"type": t} for p, t in params.items()},
                            "required": list(params)})


TOOLS = [
    _tool("find_account", "SELECT account_id, name, balance FROM accounts WHERE name = :name", "read", "search",
          "accounts", name="string"),
    _tool("deposit", "UPDATE accounts SET balance = balance + :amount WHERE account_id = :account_id", "write",
          "update", "accounts", account_id="integer", amount="number"),
    _tool("add_note", "INSERT INTO audit (note) VALUES (:note)", "write", "insert", "audit", note="string"),
    _tool("open_account", "INSERT INTO accounts (name, balance) VALUES (:name, :balance)", "write", "insert",
          "accounts", name="string", balance="number"),
]

FIND = Subtask(description="Find Ada's account and her balance.", ask="what is Ada's balance?",
               steps=[[PlannedCall(tool="find_account", arguments={"name": "Ada"})]], answer_fields=["balance"])
DEPOSIT = Subtask(description="Deposit 40 into Ada's account.", ask="please deposit 40 into her account.",
                  changes_data=True,
                  steps=[[PlannedCall(tool="deposit", arguments={"account_id": ResultRef(subtask=0, step=0,
                                                                                         field="account_id"),
                                                                 "amount": 40})]])
DEPOSIT_TASK = Task(goal="Ada wants to know her balance and deposit 40.", difficulty="easy",
                    subtasks=[FIND, DEPOSIT])


def call(tool: str, **args) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": tool, "args": args, "id": "", "type": "tool_call"}])


def calls(*pairs: tuple[str, dict]) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": n, "args": a, "id": "", "type": "tool_call"} for n, a in pairs])


class PlantedBackend(OfflineBackend):
    """The offline backend, but with a fixed task, a scripted user and assistant, and a judge that approves."""

    def __init__(self, task: Task | list[Task], assistant: list, user: list[str]) -> None:
        self.tasks = task if isinstance(task, list) else [task]
        self.model = ScriptedChatModel(responses=list(assistant))
        settings = Settings(backend="openai", model="scripted", base_url="http://127.0.0.1:9/v1", api_key="k")
        self.assistant = OpenAIBackend(settings, chat_model=self.model)
        self.user = user
        self.task_requests: list[TaskRequest] = []

    async def generate_task(self, request: TaskRequest) -> tuple[Task, Usage]:
        self.task_requests.append(request)
        return self.tasks[min(len(self.task_requests), len(self.tasks)) - 1], Usage()

    async def user_turn(self, request: UserTurnRequest) -> tuple[UserTurn, Usage]:
        text = self.user[min(request.user_turn, len(self.user) - 1)]
        return UserTurn(user_message=text, is_task_complete=request.user_turn >= len(self.user) - 1), Usage()

    async def assistant_turn(self, request: AssistantRequest) -> tuple[AIMessage, Usage]:
        return await self.assistant.assistant_turn(request)

    async def judge(self, request: JudgeRequest) -> tuple[Verdict, Usage]:
        return Verdict(judgment="valid", reasoning="Approved (this judge approves everything)."), Usage()


def run_planted(database: Path, task: Task | list[Task], assistant: list, user: list[str], name: str = "planted") -> dict:
    """One dialogue of one task with the planted backend; the graph's final state."""
    backend = PlantedBackend(task, assistant, user)
    register_backend(name, backend)
    graph = build_dialogue_graph().compile(checkpointer=InMemorySaver())
    final = asyncio.run(graph.ainvoke(
        {"dialogue_id": name, "source_db": str(database), "seed": 1, "tasks_per_dialogue": 1,
         "toolset": [t.model_dump() for t in TOOLS]},
        {"configurable": {"thread_id": name}, "recursion_limit": 200}, context=Settings(backend=name)))
    final["backend"] = backend
    return final
