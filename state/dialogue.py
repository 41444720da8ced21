"""The dialogue graph's state, its narrow input and output, and what flows between its nodes."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from langchain_core.messages import AnyMessage
from langgraph.channels.delta import DeltaChannel
from pydantic import BaseModel, Field, field_validator, model_validator

from state.messages import merge_messages
from state.personas import Persona
from state.schema import DatabaseSchema
from state.sources import SourceRef, as_refs, joined_name, read_joined
from state.tasks import RubricCategory, Task
from state.tools import Tool, ToolResult
from state.verification import Verification


class UserTurn(BaseModel):
    """What the user simulator returns each turn."""

    user_message: str
    is_task_complete: bool = False


class SimulatedWorld(BaseModel):
    reference_time: str = Field(description="The dialogue's 'now' (ISO 8601); dates in results are drawn around it.")
    entities: dict[str, dict[str, Any]] = Field(default_factory=dict, description="'entity:id' -> its fields.")
    serial: int = 0


class ExecutedCall(BaseModel):
    """One tool call as it ran: executed on the dialogue's sandbox, or simulated."""

    tool_call_id: str
    tool: str
    arguments: dict[str, Any]
    result: ToolResult
    mode: Literal["read", "write"] | None = None
    task_index: int = 0
    simulated: bool = False
    clock: str | None = Field(None, description="The dialogue's time the call's effect depends on (a SQL write's "
                                                "time-default columns): a replay runs it at that time.")
    record: dict[str, Any] | None = Field(None, description="What its source kept beyond the result (an MCP call's "
                                                            "server, content, structured content, isError, latency).")


class JudgedItem(BaseModel):
    text: str
    category: RubricCategory
    met: bool | None = Field(None, description="None when the category is not enforced.")
    note: str = ""


class Verdict(BaseModel):
    task_index: int = 0
    judgment: Literal["valid", "invalid"]
    reasoning: str
    items: list[JudgedItem] = []
    premature_completion: bool = False
    verification: Verification | None = Field(None, description="State, facts, judge and user conduct, each checked.")


class Usage(BaseModel):
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Replies a model got wrong, each fed back once or more (and counted whether the retry then worked)
    parse_failures: int = Field(0, description="JSON replies that did not parse into the role's model.")
    empty_replies: int = Field(0, description="Assistant replies with neither text nor tool calls.")
    unknown_tools: int = Field(0, description="Assistant tool calls naming a tool that does not exist.")
    bad_arguments: int = Field(0, description="Assistant tool calls whose arguments were not a JSON object.")

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(**{name: getattr(self, name) + getattr(other, name) for name in Usage.model_fields})


def concat(state: list[Any], writes: list[list[Any]]) -> list[Any]:
    """The reducer of an append-only list kept as deltas: every batch of writes appended in order."""
    return [*state, *(item for write in writes for item in write)]


def add_usage(left: Usage | None, right: Usage | None) -> Usage:
    return (left or Usage()) + (right or Usage())


class ForkOrigin(BaseModel):
    dialogue: str
    checkpoint: str


class DialogueInput(BaseModel):
    """What it takes to start (and later replay) one dialogue."""

    dialogue_id: str = Field("dialogue-0", description="Identifier of the dialogue (one thread each).")
    sources: list[SourceRef] = Field(default_factory=list,
                                     description="The tool sources the dialogue runs on, as the run names them (a "
                                                 "SQLite file's path; a URI for other kinds); empty when every "
                                                 "tool needs no named source (simulated tools).")
    source_db: str = Field("", description="The old form of `sources` (names joined by ' + '), as checkpoints of "
                                           "earlier runs hold it and as a name is typed in Studio: read into "
                                           "`sources` when that is empty.")
    seed: int = Field(0, description="Seed for every random choice in this dialogue.")
    tasks_per_dialogue: int = Field(2, ge=1, description="How many tasks the user pursues in this dialogue.")
    backend: str = Field("", description="'offline' or 'openai'; empty: the run's settings decide.")
    toolset: list[Tool] = Field(default_factory=list,
                                description="Tools given inline; synthesized when empty (and no toolset_key). With "
                                            "a store, `prepare` keeps them there and clears this field.")
    toolset_key: str = Field("", description="Content hash of the toolset kept in the graph's store "
                                             "(namespace 'toolsets'); empty when the tools are inline.")
    schema_key: str = Field("", description="Content hash of the database schema kept in the graph's store "
                                            "(namespace 'schemas'); empty: `prepare` reads the database.")
    prelude: list[dict[str, Any]] = Field(
        default_factory=list,
        description="An existing conversation (OpenAI chat messages) to continue; exported unchanged.")
    forked_from: ForkOrigin | None = Field(None, description="Set on a dialogue forked from another's checkpoint.")
    task_style: Literal["descriptive", "question"] = Field(
        "descriptive", description="Latent goals for a user simulator, or direct questions (task-oriented).")
    persona: Persona | None = Field(None, description="The user persona drawn for this dialogue from the run's pool "
                                                      "(None: the plain simulated user); each task records it.")

    @field_validator("sources", mode="before")
    @classmethod
    def _joined_sources(cls, value: Any) -> Any:
        return as_refs(value)

    @model_validator(mode="after")
    def _old_form(self) -> "DialogueInput":
        if self.source_db and not self.sources:
            self.sources = read_joined(self.source_db)
        return self

    @property
    def source_label(self) -> str:
        """The dialogue's sources in one readable line (as datasets name them)."""
        return joined_name(self.sources)

    @field_validator("prelude")
    @classmethod
    def _chat_messages(cls, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Only conversations a chat-completions endpoint would accept: every call answered, every answer
        to a call, arguments as JSON text, user and assistant turns alternating."""
        open_calls: set[str] = set()
        previous = ""  # role of the message before, "assistant+calls" for one that called tools
        for i, message in enumerate(messages):
            role = message.get("role")
            if role not in ("system", "user", "assistant", "tool"):
                raise ValueError(f"message {i} has no valid role (system, user, assistant or tool)")
            if role != "tool" and open_calls:
                raise ValueError(f"message {i}: tool calls {sorted(open_calls)} were never answered by tool messages")
            # Roles must alternate (chat templates such as Mistral's and Gemma's refuse anything else).
            if role == "system" and i > 0:
                raise ValueError(f"message {i}: a system message may only come first")
            if role == "user" and previous not in ("", "system", "assistant"):
                raise ValueError(f"message {i}: a user message must follow an assistant reply, not a {previous} one")
            if role == "assistant" and previous not in ("user", "tool"):
                raise ValueError(f"message {i}: an assistant message must answer a user or tool message")
            content = message.get("content")
            if role in ("system", "user") and not (isinstance(content, str) and content.strip()):
                raise ValueError(f"message {i} ({role}) needs text content")
            if role == "assistant":
                for call in message.get("tool_calls") or []:
                    fn = call.get("function") if isinstance(call, dict) else None
                    if not isinstance(fn, dict) or not isinstance(call.get("id"), str) or not fn.get("name"):
                        raise ValueError(f"message {i}: each tool call needs an id and a function name")
                    if not isinstance(fn.get("arguments"), str):
                        raise ValueError(f"message {i}: tool call arguments must be a JSON string")
                    try:
                        json.loads(fn["arguments"])
                    except ValueError:
                        raise ValueError(f"message {i}: tool call arguments are not valid JSON") from None
                    open_calls.add(call["id"])
                if not message.get("tool_calls") and not (isinstance(content, str) and content.strip()):
                    raise ValueError(f"message {i} (assistant) needs text content or tool calls")
            previous = "assistant+calls" if role == "assistant" and message.get("tool_calls") else role
            if role == "tool":
                call_id = message.get("tool_call_id")
                if not call_id:
                    raise ValueError(f"message {i} is a tool message without tool_call_id")
                if call_id not in open_calls:
                    raise ValueError(f"message {i} answers tool call {call_id!r}, which no assistant message made")
                open_calls.discard(call_id)
        if open_calls:
            raise ValueError(f"tool calls {sorted(open_calls)} at the end were never answered by tool messages")
        return messages


# Growing lists are delta channels: a checkpoint stores what a step added, not the whole list again.
class DialogueState(DialogueInput):
    database: DatabaseSchema | None = Field(None, description="The schema, inline when the graph has no store.")
    messages: Annotated[list[AnyMessage], DeltaChannel(merge_messages)] = []
    tasks: Annotated[list[Task], DeltaChannel(concat)] = []
    task_starts: Annotated[list[int], DeltaChannel(concat)] = Field(
        default_factory=list, description="Message index where each task begins.")
    calls: Annotated[list[ExecutedCall], DeltaChannel(concat)] = []
    verdicts: Annotated[list[Verdict], DeltaChannel(concat)] = []
    last_user_turn: UserTurn | None = None
    user_turns_in_task: int = 0
    steps_in_turn: int = 0
    ended_by_budget: bool = False
    reference_time: str = Field("", description="The dialogue's 'now' (ISO 8601), fixed when it starts: its tool "
                                            "calls' clock and the dates simulated results are drawn around.")
    usage: Annotated[Usage, add_usage] = Field(default_factory=Usage)
    replay_diverged: list[str] = Field(default_factory=list, description="Recorded calls (ids) whose replay on a "
                                       "fresh sandbox (resume, fork) gave another result than they first did.")
    planned_tasks: list[Task] = Field(default_factory=list, description="Tasks fixed in advance (an evaluation's "
                                      "trial): the task generator takes the next of them instead of drawing one.")
    user_seed: int | None = Field(None, description="The user simulator's own seed (an evaluation's trial: the "
                                                    "same for every model); None: the dialogue's seed.")

    @property
    def task_index(self) -> int:
        return max(len(self.tasks) - 1, 0)

    @property
    def current_task(self) -> Task | None:
        return self.tasks[-1] if self.tasks else None

    def writes(self) -> list[ExecutedCall]:
        """Every write that went through, in order (a replay of the recorded calls repeats exactly these)."""
        return [c for c in self.calls if c.mode == "write" and c.result.ok]


class DialogueOutput(BaseModel):
    dialogue_id: str
    messages: list[AnyMessage]
    tasks: list[Task]
    verdicts: list[Verdict]
    calls: list[ExecutedCall]
