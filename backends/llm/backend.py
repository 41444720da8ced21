"""The LLM backend: each role is one of our prompts, sent to the role's model through
`backends.llm` (endpoints, structured outputs, retries); JSON replies are parsed into our models.
"""

from __future__ import annotations

import json
from typing import Any, Callable, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel

from backends.protocols import (AssistantRequest, ExpansionRequest, JudgeRequest, OutputSchemaRequest, Question,
                                QuestionRequest, SimulationRequest, TaskRequest, ToolDesignRequest, ToolProposalRequest,
                                ToolRepairRequest, UserTurnRequest)
from backends.llm.caller import LLMCaller
from backends.llm.replies import (BackendOutputError, ReplyError, assistant_fault, assistant_feedback,
                                  extract_json_object, usage_of)
from backends.llm.reply_models import (OUTPUT_SCHEMA_REPLY, Proposals, Questions, RepairedTool, RepairReply, TaskReply,
                                       ToolList, ToolSpecs, ToolSpecsReply, VerdictReply, parse_output_schema,
                                       parse_task, parse_user_turn, parse_verdict, simulated_result_schema)
from environment.sources.simulated.simulator import validation_error
from prompts import load_prompt
from prompts.render import (dialect_of, render_known_values, render_rubric, render_schema, render_subtasks,
                            render_tools, render_transcript, sandbox_paths_line, summarize_call)
from state.config import Settings
from state.dialogue import Usage, UserTurn, Verdict
from state.tasks import Task

__all__ = ["BackendOutputError", "OpenAIBackend", "ReplyError", "extract_json_object", "usage_of"]

T = TypeVar("T")

MAX_CONTEXT_CALLS = 10
USER_RESULT_CHARS = 1500
JUDGE_RESULT_CHARS = 6000
# A reply with nothing usable in it is asked for again once; then the dialogue goes on with it (a
# bad tool call is answered by the executor with an error) or, when it is empty, stops with the reason.
ASSISTANT_RETRIES = 1


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


def aim_note(request: TaskRequest) -> str:
    """A targeted task's aim in words (generate --target), after the context; nothing for any other task."""
    sentence = request.aim.sentence() if request.aim else ""
    return f"\n\n{sentence}" if sentence else ""


def plan_feedback(request: TaskRequest) -> str:
    """Why the last task was refused at the plan check (verification/plan_check.py), for the one retry it gets."""
    if not request.feedback:
        return ""
    return (f"\nYour previous task was refused: its plan was run on a copy of the database and {request.feedback}. "
            "Write a task whose plan runs as described.\n")


def variant_instructions(variant: str) -> str:
    """The task prompt's section for a hard case (prompts/task_generator_variants.md); '' for a standard task."""
    sections: dict[str, str] = {}
    name = ""
    for line in load_prompt("task_generator_variants").text.splitlines():
        if line.startswith("## "):
            name = line[3:].strip()
            sections[name] = ""
        elif name:
            sections[name] += line + "\n"
    return f"\n{sections[variant].rstrip()}\n" if variant in sections else ""


def user_private(task: Task) -> str:
    """Who the user is (a persona), what it knows but keeps to itself (a held-back value), and how to take a part
    that cannot be done."""
    lines = []
    if task.persona is not None:
        lines.append(f"Who you are (play this person throughout): {task.persona.describe()}")
    if task.held_back is not None:
        held = task.held_back
        lines.append(f"You also know the {held.label}: {held.value}. Keep it to yourself: do not mention it, or "
                     f"hint at it, until the assistant asks you for it; when it asks, give it exactly (for example: "
                     f"\"{held.reveal}\").")
    if any(s.cannot for s in task.subtasks):
        lines.append("If the assistant tells you it cannot do a part, take its word for it and go on with the rest; "
                     "do not insist.")
    return "\n" + "\n".join(f"- {line}" for line in lines) if lines else ""


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


class OpenAIBackend:
    """Every role is one prompt, one chat model, and a JSON reply parsed into our models."""

    name = "openai"

    def __init__(self, settings: Settings, chat_model: BaseChatModel | None = None) -> None:
        self.settings = settings
        self.caller = LLMCaller(settings, chat_model)

    async def aclose(self) -> None:
        """Close the running loop's HTTP connections; call it before the loop ends. The backend stays usable."""
        await self.caller.aclose()

    async def settle(self) -> list[str]:
        """Find each endpoint's structured-output mode now (one probe each); a line on each for the run's start."""
        return await self.caller.settle()

    def record(self) -> dict[str, Any]:
        """Models per role and structured modes per endpoint, for each dialogue's metadata."""
        return self.caller.record()

    async def ask(self, role: str, messages: list[BaseMessage], parse: Callable[[dict[str, Any]], T],
                  schema: type[BaseModel] | dict[str, Any], **options: Any) -> tuple[T, Usage]:
        """A JSON role: the reply's schema goes to the server, the reply is parsed with `parse`, errors fed
        back. `options` (e.g. a temperature) go with every request of this call."""
        return await self.caller.ask_json(role, messages, parse, schema, **options)

    async def propose_tools(self, request: ToolProposalRequest) -> tuple[list[dict[str, object]], Usage]:
        prompt = load_prompt("tool_synthesizer").render(schema=render_schema(request.database),
                                                        max_tools=request.max_tools, **dialect_of(request.database))
        tools, usage = await self.ask("tool_synthesizer", [HumanMessage(content=prompt)],
                                      lambda obj: ToolList.model_validate(obj).tools, Proposals)
        return tools[: request.max_tools], usage

    async def repair_tool(self, request: ToolRepairRequest) -> tuple[dict[str, object] | None, Usage]:
        tool = json.dumps(request.tool, indent=2, ensure_ascii=False, default=str)
        prompt = load_prompt("tool_repair").render(schema=render_schema(request.database), tool=tool,
                                                   error=request.error)

        def parse(obj: dict[str, Any]) -> dict[str, object]:
            tool = obj["tool"] if isinstance(obj.get("tool"), dict) else obj
            RepairedTool.model_validate(tool)
            return dict(tool)

        try:
            return await self.ask("tool_repair", [HumanMessage(content=prompt)], parse, RepairReply)
        except BackendOutputError as exc:
            return None, exc.usage  # the caller drops the tool; a failed repair is not an error of the run

    async def generate_task(self, request: TaskRequest) -> tuple[Task, Usage]:
        prompt = load_prompt("task_generator").render(
            schema=render_schema(request.database),
            tools=render_tools(request.tools) + render_known_values(request.tools),
            context=task_context(request) + aim_note(request), difficulty=request.difficulty,
            feedback=plan_feedback(request), variant=variant_instructions(request.variant))
        return await self.ask("task_generator", [HumanMessage(content=prompt)],
                              lambda obj: parse_task(obj, request), TaskReply)

    async def user_turn(self, request: UserTurnRequest) -> tuple[UserTurn, Usage]:
        system = load_prompt("user_simulator").render(goal=request.task.goal, subtasks=render_subtasks(request.task),
                                                      opening=user_opening(request), private=user_private(request.task))
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
        return await self.ask("user_simulator", [SystemMessage(content=system), HumanMessage(content=text)],
                              parse_user_turn, UserTurn)

    async def assistant_turn(self, request: AssistantRequest) -> tuple[AIMessage, Usage]:
        tools = [t.openai_tool() for t in request.tools] if request.allow_tools and request.tools else None
        history: list[BaseMessage] = [SystemMessage(content=load_prompt("assistant").text
                                                      + sandbox_paths_line(request.tools)), *request.messages]
        names = {t.name for t in request.tools}
        usage = Usage()
        for attempt in range(ASSISTANT_RETRIES + 1):
            reply = await self.caller.chat("assistant", history, tools)
            usage = usage + usage_of(reply)
            fault = assistant_fault(reply, names, tools_allowed=tools is not None)
            if fault is None:
                return reply, usage
            kind, error = fault
            usage = usage + Usage(**{kind: 1})
            if attempt == ASSISTANT_RETRIES:
                if kind == "empty_replies":
                    raise BackendOutputError("assistant", error, attempts=attempt + 1, usage=usage)
                return reply, usage  # the executor answers the bad call with an error the model can read
            # The bad reply goes back as text: an unanswered tool call would not be a valid conversation.
            said = reply.text or "; ".join(f"(called {c.get('name')}({c.get('args')}))"
                                           for c in [*reply.tool_calls, *reply.invalid_tool_calls])
            history += [AIMessage(content=said or "(nothing)"), assistant_feedback(error)]
        raise AssertionError("unreachable")  # the loop returns or raises

    async def generate_questions(self, request: QuestionRequest) -> tuple[list[Question], Usage]:
        prompt = load_prompt("tool_questions").render(domain=request.domain, tools=render_tools(request.seed_tools),
                                                      count=request.count)
        return await self.ask("tool_questions", [HumanMessage(content=prompt)],
                              lambda obj: Questions.model_validate(obj).questions, Questions)

    async def design_tools(self, request: ToolDesignRequest) -> tuple[list[dict[str, object]], Usage]:
        prompt = load_prompt("tool_designer").render(domain=request.domain, question=request.question.text,
                                                     tools=render_tools(request.known_tools) or "(none yet)")
        return await self.ask("tool_designer", [HumanMessage(content=prompt)],
                              lambda obj: ToolSpecs.model_validate(obj).tools, ToolSpecsReply)

    async def expand_tools(self, request: ExpansionRequest) -> tuple[list[dict[str, object]], Usage]:
        listing = json.dumps([t.function_spec() for t in request.tools], ensure_ascii=False)
        prompt = load_prompt("tool_expansion").render(domain=request.domain, tools=listing, max_new=request.max_new)
        tools, usage = await self.ask("tool_expansion", [HumanMessage(content=prompt)],
                                      lambda obj: ToolSpecs.model_validate(obj).tools, ToolSpecsReply)
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
        return await self.ask("output_schema", [*history, HumanMessage(content=ask)], parse_output_schema,
                              OUTPUT_SCHEMA_REPLY)

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

        return await self.ask("tool_simulator", [HumanMessage(content=prompt)], parse,
                              simulated_result_schema(tool.output_schema))

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
        return await self.ask("validator", [HumanMessage(content=prompt)], lambda obj: parse_verdict(obj, request),
                              VerdictReply)
