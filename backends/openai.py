"""The LLM backend: our prompts sent through a LangChain chat model (ChatOpenAI against any
OpenAI-compatible server by default); JSON replies parsed into our pydantic models, with the
validation error fed back to the model on failure.
"""

from __future__ import annotations

import asyncio
import json
import re
import weakref
from typing import Any, Callable, Iterable, TypeVar

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from backends.direct_chat import DirectChatOpenAI
from pydantic import BaseModel, ConfigDict, ValidationError

from backends.base import (AssistantRequest, ExpansionRequest, JudgeRequest, OutputSchemaRequest, Question,
                           QuestionRequest, SimulationRequest, TaskRequest, ToolDesignRequest, ToolProposalRequest,
                           ToolRepairRequest,
                           UserTurnRequest)
from environment.simulator import validation_error
from prompts import load_prompt
from state.config import Settings
from state.dialogue import ExecutedCall, Usage, UserTurn, Verdict
from state.schema import DatabaseSchema
from state.tasks import ResultRef, Task
from state.tools import Tool

T = TypeVar("T")

MAX_CONTEXT_CALLS = 10
USER_RESULT_CHARS = 1500
JUDGE_RESULT_CHARS = 6000


class ReplyError(ValueError):
    """A reply that is not the JSON we asked for (a role's own checks raise it too)."""


class BackendOutputError(RuntimeError):
    """A role's reply could not be parsed into our models, even after feeding the error back."""

    def __init__(self, role: str, last_error: str, *, attempts: int = 0, usage: Usage | None = None,
                 last_reply: str = "") -> None:
        self.role = role
        self.last_error = last_error
        self.attempts = attempts
        self.usage = usage or Usage()
        self.last_reply = last_reply
        super().__init__(f"{role}: no usable reply after {attempts} attempt(s); last error: {last_error}")


# ---------------------------------------------------------------- parsing replies

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.S)
# Reasoning models served through OpenAI-compatible servers often prefix their answer with a
# <think> block that may itself contain braces.
_THINK = re.compile(r"<think>.*?</think>", re.S)


def extract_json_object(text: str) -> tuple[dict[str, Any], str]:
    """The first JSON object in a reply: inside ```json fences if there are any, else after any prose.

    Returns the object and a note about an earlier `{` that did not parse ("" if none), so a schema
    error on an inner object can also point at the broken outer one.
    """
    text = _THINK.sub("", text)
    decoder = json.JSONDecoder()
    skipped = ""
    for candidate in [*(m.group(1) for m in _FENCE.finditer(text)), text]:
        start = candidate.find("{")
        while start != -1:
            try:
                obj, _ = decoder.raw_decode(candidate, start)
            except json.JSONDecodeError as exc:
                skipped = skipped or f"{exc.msg} at line {exc.lineno} column {exc.colno}"
            else:
                if isinstance(obj, dict):
                    return obj, skipped
            start = candidate.find("{", start + 1)
    if skipped:
        raise ReplyError(f"the reply is not valid JSON: {skipped}")
    raise ReplyError("the reply contains no JSON object")


def describe_validation_error(exc: ValidationError, limit: int = 8) -> str:
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{loc}: {err['msg']}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def feedback_message(error: str) -> HumanMessage:
    return HumanMessage(content=f"Your reply could not be used: {error}.\n"
                                "Reply again with the corrected JSON object only: no prose, no code fences.")


def usage_of(message: BaseMessage) -> Usage:
    meta = getattr(message, "usage_metadata", None) or {}
    return Usage(llm_calls=1, prompt_tokens=int(meta.get("input_tokens") or 0),
                 completion_tokens=int(meta.get("output_tokens") or 0))


# ---------------------------------------------------------------- rendering for prompts

def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _clip(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[:limit] + f"… ({len(text) - limit} more characters)"


def render_schema(database: DatabaseSchema) -> str:
    """Tables with typed columns, keys, row counts and the data view, one JSON array per row."""
    blocks = []
    for table in database.tables:
        cols = []
        for col in table.columns:
            flags = [col.declared_type or "(untyped)"]
            if col.pk_position:
                flags.append("PRIMARY KEY" if len(table.primary_key) == 1 else f"PRIMARY KEY part {col.pk_position}")
            if col.not_null and not col.pk_position:
                flags.append("NOT NULL")
            if col.unique and not col.pk_position:
                flags.append("UNIQUE")
            if col.has_default:
                flags.append("with a default")
            cols.append(f"{col.name} {' '.join(flags)}")
        lines = [f"Table {table.name} ({table.row_count} rows)", "  columns: " + ", ".join(cols)]
        if table.is_rowid_alias_pk:
            lines.append(f"  {table.primary_key[0].name} is assigned automatically on insert")
        for fk in table.foreign_keys:
            lines.append(f"  foreign key: {fk.column} -> {fk.ref_table}.{fk.ref_column or '(primary key)'}")
        if table.sample_rows:
            names = list(table.sample_rows[0])
            lines.append(f"  data view, first {len(table.sample_rows)} rows as {_json(names)}:")
            lines.extend(f"    {_json([row.get(n) for n in names])}" for row in table.sample_rows)
        blocks.append("\n".join(lines))
    if database.skipped:
        blocks.append("Not usable by tools: " + "; ".join(f"{s.name} ({s.reason})" for s in database.skipped))
    return "\n\n".join(blocks)


def render_tools(tools: Iterable[Tool]) -> str:
    lines, optional = [], False
    for tool in tools:
        required = set(tool.required)
        optional = optional or any(p not in required for p in tool.properties)
        params = ", ".join(p if p in required else f"{p}?" for p in tool.properties)
        lines.append(f"- {tool.name}({params}): {tool.description}")
    if optional:
        lines.append("(an argument marked ? is optional)")
    return "\n".join(lines) or "(no tools)"


def summarize_call(call: ExecutedCall, limit: int = 300) -> str:
    result = call.result
    if result.error is not None:
        outcome = f"error ({result.error.type}): {result.error.message}"
    elif result.rows is not None:
        count = result.row_count if result.row_count is not None else len(result.rows)
        outcome = f"{count} row(s)" + (f", first: {_json(result.rows[0])}" if result.rows else "")
    else:
        outcome = f"{result.rows_affected} row(s) changed" + (
            f", new id {result.last_row_id}" if result.last_row_id else "")
    return _clip(f"- {call.tool}({_json(call.arguments)}) -> {outcome}", limit)


def task_context(request: TaskRequest) -> str:
    if request.conversation and not request.previous_tasks:
        transcript = render_transcript(request.conversation, user="User", result_chars=400)
        return ("The user has already had this conversation with the assistant:\n"
                f"{transcript}\n\nWrite a task that follows on naturally from it: what this user would want next, "
                "using the records and results it mentions where they fit the database.")
    if request.relation == "first" or not request.previous_tasks:
        return "This is the first task of a new conversation."
    goals = "\n".join(f"{i}. {t.goal}" for i, t in enumerate(request.previous_tasks, 1))
    calls = request.previous_calls[-MAX_CONTEXT_CALLS:]
    outcomes = "\n".join(summarize_call(c) for c in calls) or "(no tool calls ran)"
    if request.relation == "extends":
        how = ("Write a task that extends them: a follow-up this user would naturally raise next, building on "
               "the records and results above.")
    else:
        how = ("Write a task that is independent of them: a new goal about other records that makes sense on its "
               "own. Do not repeat an earlier goal.")
    return (f"Earlier in this conversation the same user pursued these goals:\n{goals}\n\n"
            f"What the tools returned along the way (you may use these values too; most recent last):\n"
            f"{outcomes}\n\n{how}")


def render_transcript(messages: list[AnyMessage], *, user: str, result_chars: int | None,
                      marker_at: int | None = None, marker: str = "") -> str:
    """A readable conversation: texts, every tool call with its JSON arguments, and each result."""
    names: dict[str, str] = {}
    lines = []
    for i, message in enumerate(messages):
        if marker_at is not None and i == marker_at:
            lines.append(marker)
        if isinstance(message, HumanMessage):
            lines.append(f"{user}: {message.text}")
        elif isinstance(message, AIMessage):
            if message.text.strip():
                lines.append(f"Assistant: {message.text}")
            for call in message.tool_calls:
                names[call.get("id") or ""] = call["name"]
                lines.append(f"Assistant calls {call['name']}({_json(call.get('args') or {})})")
        elif isinstance(message, ToolMessage):
            name = message.name or names.get(message.tool_call_id, "tool")
            lines.append(f"Result of {name}: {_clip(message.text, result_chars)}")
    if marker_at is not None and marker_at >= len(messages):
        lines.append(marker)
    return "\n".join(lines)


def _arg(value: object) -> object:
    if isinstance(value, ResultRef):
        return f"<{value.field} from the result of subtask {value.subtask + 1}>"
    return value


def render_rubric(task: Task) -> str:
    rubric = task.rubric
    sections = []
    if rubric.items:
        items = []
        for item in rubric.items:
            line = f"- [{item.category}] {item.text}"
            if item.tool:
                line += f" (expects {item.tool}({_json({k: _arg(v) for k, v in item.arguments.items()})}))"
            items.append(line)
        sections.append("Items:\n" + "\n".join(items))
    for title, entries in (("Success criteria", rubric.success_criteria),
                           ("Expected tool-use pattern", rubric.expected_tool_pattern),
                           ("Checkpoints", rubric.checkpoints)):
        if entries:
            sections.append(f"{title}:\n" + "\n".join(f"- {e}" for e in entries))
    return "\n\n".join(sections) or "(no rubric: judge against the goal and its parts)"


def render_subtasks(task: Task) -> str:
    lines = []
    for i, sub in enumerate(task.subtasks, 1):
        lines.append(f"{i}. {sub.description}" + (f' (you might say: "{sub.ask}")' if sub.ask else ""))
    return "\n".join(lines) or "1. " + task.goal


def user_opening(request: UserTurnRequest) -> str:
    if request.user_turn == 0 and request.task_start == 0:
        line = ("This is the first message of the conversation: greet the assistant if you like and raise "
                "the first part.")
    elif request.user_turn == 0:
        line = ("Your earlier requests in this conversation are finished. This is the first message of a new "
                "request: move on to the first part of the goal above.")
    else:
        line = "The conversation is under way: continue it, reacting to the assistant's latest reply."
    return f"{line}\n{request.reminder}" if request.reminder.strip() else line


# ---------------------------------------------------------------- reply models

class _Proposals(BaseModel):
    tools: list[dict[str, Any]]


class _RepairedTool(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    sql: str


_CATEGORIES = {"critical": "Critical", "structural": "Structural", "noncritical": "NonCritical",
               "invalidrubric": "InvalidRubric"}


class _Questions(BaseModel):
    questions: list[Question]


class _ToolSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    description: str = ""
    parameters: dict[str, Any]


class _ToolSpecs(BaseModel):
    tools: list[dict[str, Any]]

    def model_post_init(self, _: Any) -> None:
        for tool in self.tools:
            _ToolSpec.model_validate(tool)


def _parse_output_schema(obj: dict[str, Any]) -> dict[str, object]:
    schema = obj.get("schema", obj) if isinstance(obj.get("schema"), dict) else obj
    if schema.get("type") not in ("object", "array"):
        raise ReplyError("the output schema's top-level type must be 'object' or 'array'")
    return schema


def _parse_task(obj: dict[str, Any], request: TaskRequest) -> Task:
    subtasks = obj.get("subtasks")
    if isinstance(subtasks, list):
        # A bare string is a common shortcut for a subtask; it is both the statement and the ask.
        obj = {**obj, "subtasks": [{"description": s, "ask": s} if isinstance(s, str) else s for s in subtasks]}
    task = Task.model_validate({**obj, "difficulty": request.difficulty, "relation": request.relation})
    if not task.subtasks:
        raise ReplyError("subtasks: at least one subtask is required")
    return task


def _parse_user_turn(obj: dict[str, Any]) -> UserTurn:
    turn = UserTurn.model_validate(obj)
    if not turn.user_message.strip():
        raise ReplyError("user_message: must not be empty")
    return turn


def _parse_verdict(obj: dict[str, Any], request: JudgeRequest) -> Verdict:
    obj = dict(obj)
    if isinstance(obj.get("judgment"), str):
        obj["judgment"] = obj["judgment"].strip().lower()
    if isinstance(obj.get("items"), list):
        obj["items"] = [
            {**item, "category": _CATEGORIES.get(re.sub(r"[^a-z]", "", item["category"].lower()), item["category"])}
            if isinstance(item, dict) and isinstance(item.get("category"), str) else item
            for item in obj["items"]
        ]
    verdict = Verdict.model_validate({**obj, "task_index": request.task_index})
    # The same hard rules as the offline judge, so both backends agree on them whatever the model says:
    # completion is premature only if the user declared it; an unmet Critical item or a conversation
    # cut off by the turn budget is invalid.
    unmet = [i for i in verdict.items if i.category == "Critical" and i.met is False]
    premature = request.user_declared_complete and (verdict.premature_completion or bool(unmet))
    judgment = verdict.judgment
    reasoning = verdict.reasoning
    if judgment == "valid" and (unmet or not request.user_declared_complete):
        judgment = "invalid"
        why = ("the user never declared the goal complete" if not request.user_declared_complete
               else f"{len(unmet)} Critical item(s) unmet")
        reasoning = f"[overridden to invalid: {why}] {reasoning}"
    return verdict.model_copy(update={"judgment": judgment, "reasoning": reasoning, "premature_completion": premature})


# ---------------------------------------------------------------- the backend

def chat_openai(settings: Settings, http_async_client: Any = None) -> BaseChatModel:
    # max_retries is the openai client's own retry loop (openai/_base_client.py, installed openai
    # 3.54): it retries timeouts, connection errors, 408, 409, 429 and 5xx with exponential backoff
    # (0.5 s doubling up to 8 s, minus up to 25% jitter), honouring Retry-After / retry-after-ms.
    return DirectChatOpenAI(
        model=settings.model,
        base_url=settings.base_url,
        api_key=settings.api_key.get_secret_value() if settings.api_key else "not-needed",
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        timeout=settings.request_timeout,
        max_retries=settings.http_retries,
        http_async_client=http_async_client,
        # Chat completions is what every OpenAI-compatible server speaks; some model names would
        # otherwise be routed to the Responses API.
        use_responses_api=False,
        # We only use whole replies. Without this, a graph streamed with stream_mode="messages" makes
        # ChatOpenAI stream, and on a custom base_url streamed replies carry no token usage.
        disable_streaming=True,
    )


class OpenAIBackend:
    """Every role is one prompt, one chat model, and a JSON reply parsed into our models."""

    name = "openai"

    def __init__(self, settings: Settings, chat_model: BaseChatModel | None = None) -> None:
        self.settings = settings
        self.chat_model = chat_model if chat_model is not None else chat_openai(settings)
        self._owns_model = chat_model is None
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[BaseChatModel, Any]] = \
            weakref.WeakKeyDictionary()

    async def _model(self) -> BaseChatModel:
        """The chat model for the running event loop.

        langchain-openai shares one async HTTP client per (base_url, timeout) across the process, and
        its pooled connections belong to the loop that opened them: a backend reused under a second
        asyncio.run() fails with "Event loop is closed". So each loop gets its own client, built in a
        worker thread because loading TLS certificates reads files (a blocking call on the loop).
        """
        if not self._owns_model:
            return self.chat_model
        loop = asyncio.get_running_loop()
        if loop not in self._per_loop:
            def build() -> tuple[BaseChatModel, Any]:
                client = openai.DefaultAsyncHttpxClient()
                return chat_openai(self.settings, client), client

            self._per_loop[loop] = await asyncio.to_thread(build)
        return self._per_loop[loop][0]

    async def aclose(self) -> None:
        """Close the running loop's HTTP connections; call it before the loop ends. The backend stays usable."""
        entry = self._per_loop.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[1].aclose()

    async def _ask(self, role: str, messages: list[BaseMessage],
                   parse: Callable[[dict[str, Any]], T], **options: Any) -> tuple[T, Usage]:
        """Invoke, parse the reply's JSON with `parse`, and on failure feed the error back and retry.
        `options` (e.g. a temperature) go with every request of this call."""
        history = list(messages)
        usage = Usage()
        error, text = "", ""
        attempts = self.settings.parse_retries + 1
        for _ in range(attempts):
            reply = await (await self._model()).ainvoke(history, **options)
            usage = usage + usage_of(reply)
            text = reply.text
            try:
                obj, skipped = extract_json_object(text)
                try:
                    return parse(obj), usage
                except ValidationError as exc:
                    error = describe_validation_error(exc)
                    if skipped:
                        error += f" (an earlier '{{' in the reply did not parse: {skipped})"
            except ReplyError as exc:
                error = str(exc)
            history += [AIMessage(content=text), feedback_message(error)]
        raise BackendOutputError(role, error, attempts=attempts, usage=usage, last_reply=text)

    async def propose_tools(self, request: ToolProposalRequest) -> tuple[list[dict[str, object]], Usage]:
        prompt = load_prompt("tool_synthesizer").render(schema=render_schema(request.database),
                                                        max_tools=request.max_tools)
        tools, usage = await self._ask("tool_synthesizer", [HumanMessage(content=prompt)],
                                       lambda obj: _Proposals.model_validate(obj).tools)
        return tools[: request.max_tools], usage

    async def repair_tool(self, request: ToolRepairRequest) -> tuple[dict[str, object] | None, Usage]:
        tool = json.dumps(request.tool, indent=2, ensure_ascii=False, default=str)
        prompt = load_prompt("tool_repair").render(schema=render_schema(request.database), tool=tool,
                                                   error=request.error)

        def parse(obj: dict[str, Any]) -> dict[str, object]:
            tool = obj["tool"] if isinstance(obj.get("tool"), dict) else obj
            _RepairedTool.model_validate(tool)
            return dict(tool)

        try:
            return await self._ask("tool_repair", [HumanMessage(content=prompt)], parse)
        except BackendOutputError as exc:
            return None, exc.usage  # the caller drops the tool; a failed repair is not an error of the run

    async def generate_task(self, request: TaskRequest) -> tuple[Task, Usage]:
        prompt = load_prompt("task_generator").render(
            schema=render_schema(request.database), tools=render_tools(request.tools),
            context=task_context(request), difficulty=request.difficulty)
        return await self._ask("task_generator", [HumanMessage(content=prompt)],
                               lambda obj: _parse_task(obj, request))

    async def user_turn(self, request: UserTurnRequest) -> tuple[UserTurn, Usage]:
        system = load_prompt("user_simulator").render(goal=request.task.goal, subtasks=render_subtasks(request.task),
                                                      opening=user_opening(request))
        if request.messages:
            marker = ("--- your earlier requests end here; your current goal starts below ---"
                      if request.task_start > 0 else "")
            transcript = render_transcript(request.messages, user="You", result_chars=USER_RESULT_CHARS,
                                           marker_at=request.task_start if request.task_start > 0 else None,
                                           marker=marker)
            text = (f"The conversation so far (your messages are marked You):\n\n{transcript}\n\n"
                    "Write your next message.")
        else:
            text = "The conversation has not started yet. Write your first message."
        return await self._ask("user_simulator", [SystemMessage(content=system), HumanMessage(content=text)],
                               _parse_user_turn)

    async def assistant_turn(self, request: AssistantRequest) -> tuple[AIMessage, Usage]:
        model = await self._model()
        if request.allow_tools and request.tools:
            model = model.bind_tools([t.openai_tool() for t in request.tools])  # type: ignore[assignment]
        reply = await model.ainvoke([SystemMessage(content=load_prompt("assistant").text), *request.messages])
        if not isinstance(reply, AIMessage):
            reply = AIMessage(content=reply.content)
        return reply, usage_of(reply)

    async def generate_questions(self, request: QuestionRequest) -> tuple[list[Question], Usage]:
        prompt = load_prompt("tool_questions").render(domain=request.domain, tools=render_tools(request.seed_tools),
                                                      count=request.count)
        return await self._ask("tool_questions", [HumanMessage(content=prompt)],
                               lambda obj: _Questions.model_validate(obj).questions)

    async def design_tools(self, request: ToolDesignRequest) -> tuple[list[dict[str, object]], Usage]:
        prompt = load_prompt("tool_designer").render(domain=request.domain, question=request.question.text,
                                                     tools=render_tools(request.known_tools) or "(none yet)")
        return await self._ask("tool_designer", [HumanMessage(content=prompt)],
                               lambda obj: _ToolSpecs.model_validate(obj).tools)

    async def expand_tools(self, request: ExpansionRequest) -> tuple[list[dict[str, object]], Usage]:
        listing = json.dumps([t.function_spec() for t in request.tools], ensure_ascii=False)
        prompt = load_prompt("tool_expansion").render(domain=request.domain, tools=listing, max_new=request.max_new)
        tools, usage = await self._ask("tool_expansion", [HumanMessage(content=prompt)],
                                       lambda obj: _ToolSpecs.model_validate(obj).tools)
        return tools[: request.max_new], usage

    async def predict_output_schema(self, request: OutputSchemaRequest) -> tuple[dict[str, object], Usage]:
        """One running conversation: every earlier tool and the schema given for it, then this tool."""
        history: list[BaseMessage] = [SystemMessage(content=load_prompt("output_schema").text)]
        for tool in request.previous:
            history += [HumanMessage(content=json.dumps(tool.function_spec(), ensure_ascii=False)),
                        AIMessage(content=json.dumps(tool.output_schema, ensure_ascii=False))]
        ask = json.dumps(request.tool.function_spec(), ensure_ascii=False)
        if request.feedback:
            ask += f"\n\nYour last schema for this tool broke consistency: {request.feedback}. Fix those types."
        return await self._ask("output_schema", [*history, HumanMessage(content=ask)], _parse_output_schema)

    async def simulate_tool(self, request: SimulationRequest) -> tuple[object, Usage]:
        tool = request.tool
        known = [r for k, r in request.world.entities.items() if k.startswith(f"{tool.table}:")][-10:]
        prompt = load_prompt("tool_simulator").render(
            tool=json.dumps(tool.function_spec(), ensure_ascii=False),
            output_schema=json.dumps(tool.output_schema, ensure_ascii=False),
            arguments=json.dumps(request.arguments, ensure_ascii=False, default=str),
            reference_time=request.reference_time, known=json.dumps(known, ensure_ascii=False, default=str) or "[]",
            transcript=render_transcript(request.messages[-12:], user="User", result_chars=300))

        def parse(obj: dict[str, Any]) -> object:
            result = obj.get("result", obj)
            error = validation_error(tool, result)
            if error:
                raise ReplyError(f"the result does not match the output schema: {error}")
            return result

        return await self._ask("tool_simulator", [HumanMessage(content=prompt)], parse)

    async def judge(self, request: JudgeRequest) -> tuple[Verdict, Usage]:
        transcript = render_transcript(request.messages, user="User", result_chars=JUDGE_RESULT_CHARS)
        if request.user_declared_complete:
            transcript += "\n(The user then declared the goal complete.)"
        elif request.ended_by_budget:
            transcript += ("\n(The conversation was cut off here: the user ran out of turns before declaring the "
                           "goal complete.)")
        goal = request.task.goal
        if request.task.subtasks:
            goal += "\nIts parts:\n" + "\n".join(
                f"{i}. {s.description}" for i, s in enumerate(request.task.subtasks, 1))
        prompt = load_prompt("validator").render(goal=goal, rubric=render_rubric(request.task),
                                                 transcript=transcript or "(no messages)")
        return await self._ask("validator", [HumanMessage(content=prompt)], lambda obj: _parse_verdict(obj, request))
