"""Models under test (and a user) that differ from the offline ones in one way each, for `evaluate`'s tests:
each is the offline backend with one role replaced."""

from __future__ import annotations

import hashlib

from langchain_core.messages import AIMessage

from backends.offline import OfflineBackend
from backends.protocols import AssistantRequest, UserTurnRequest
from state.dialogue import Usage, UserTurn


class NoToolsAssistant(OfflineBackend):
    """Answers every message politely and never calls a tool."""

    async def assistant_turn(self, request: AssistantRequest) -> tuple[AIMessage, Usage]:
        return AIMessage(content="I am sorry, I cannot look that up right now."), Usage()


def _wrong(value: object) -> object:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return value + 7
    return f"{value} (wrong)"


class WrongValueAssistant(OfflineBackend):
    """The offline assistant's tool calls, but every write gets wrong values (ids are left alone, so the
    right row changes, wrongly)."""

    async def assistant_turn(self, request: AssistantRequest) -> tuple[AIMessage, Usage]:
        message, usage = await super().assistant_turn(request)
        writes = {t.name for t in request.tools if t.mode == "write"}
        calls = [{**c, "args": {k: v if k.endswith("id") else _wrong(v) for k, v in c["args"].items()}}
                 if c["name"] in writes else c for c in message.tool_calls]
        return AIMessage(content=message.content, tool_calls=calls), usage


class EarlyEndingUser(OfflineBackend):
    """A user who greets, never says what it wants, and ends the task at its second turn (while `early`)."""

    def __init__(self) -> None:
        super().__init__()
        self.early = True

    async def user_turn(self, request: UserTurnRequest) -> tuple[UserTurn, Usage]:
        if not self.early:
            return await super().user_turn(request)
        if request.user_turn == 0:
            return UserTurn(user_message="Hello there, good morning.", is_task_complete=False), Usage()
        return UserTurn(user_message="Never mind, bye.", is_task_complete=True), Usage()


class FlakyAssistant(OfflineBackend):
    """The offline assistant, except that it refuses when the user's opening words hash odd: it passes some
    trials of a task and fails others, as the user's phrasing varies with the trial's seed."""

    async def assistant_turn(self, request: AssistantRequest) -> tuple[AIMessage, Usage]:
        users = [m.text for m in request.messages if m.type == "human"]
        if users and int(hashlib.sha256(users[-1].encode()).hexdigest(), 16) % 2:
            return AIMessage(content="I would rather not do that."), Usage()
        return await super().assistant_turn(request)


class UnreachableAssistant(OfflineBackend):
    """A model server that stays unreachable (after the client's retries) while `down`."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    async def assistant_turn(self, request: AssistantRequest) -> tuple[AIMessage, Usage]:
        if self.down:
            raise ConnectionError("the model server is unreachable after 4 retries")
        return await super().assistant_turn(request)


class InventingUser(NoToolsAssistant):
    """The offline user, who adds an account number its task never gave it, to an assistant that does nothing."""

    async def user_turn(self, request: UserTurnRequest) -> tuple[UserTurn, Usage]:
        turn, usage = await super().user_turn(request)
        return turn.model_copy(update={"user_message": turn.user_message + " My account number is 88412."}), usage
