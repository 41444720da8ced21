"""Method B's roles on an LLM: our prompts through the chat model of an `OpenAIBackend`, whose
parse-and-retry loop (`ask`) turns each JSON reply into our models. Solvers are the same backend
with another model name (or a given chat model per solver name).
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from backends.protocols import (ActRequest, AgentTurnRequest, KnowledgeAnswerRequest, ProfileRequest,
                                QualityJudgeRequest, ReasoningQuestionRequest, ReflectRequest, SolveRequest,
                                TopicRequest)
from backends.llm.replies import ReplyError, usage_of
from backends.llm.backend import OpenAIBackend
from prompts.render import render_transcript
from prompts import load_prompt
from state.agent import Action, Fact, JudgeScore, KnowledgeChunk, Memory, Profile, ReasoningQuestion
from state.config import Settings
from state.dialogue import Usage, UserTurn

KNOWLEDGE_CHARS = 900


def render_knowledge(chunks: list[KnowledgeChunk]) -> str:
    if not chunks:
        return "(nothing found)"
    return "\n\n".join(f"[{c.source}]\n{c.text[:KNOWLEDGE_CHARS]}" for c in chunks)


def render_profile(profile: Profile | None) -> str:
    if profile is None:
        return "(an ordinary person in this setting; no further details)"
    lines = [f"{profile.name}, {profile.role}.", f"Wants to: {profile.intent}.",
             "Problems to solve: " + "; ".join(profile.problems) + "."]
    if profile.traits:
        lines.append("Personality: " + ", ".join(profile.traits) + ".")
    if profile.facts:
        lines.append("Known numbers: " + "; ".join(f"{f.label or f.name}: {f.show()}" for f in profile.facts) + ".")
    return "\n".join(lines)


def render_memory(memory: Memory) -> str:
    lines = [f"- {n}" for n in memory.notes]
    if memory.facts:
        lines.append("Numbers: " + "; ".join(f"{f.name} = {f.show()} ({f.label})" for f in memory.facts))
    return "\n".join(lines) or "(nothing yet)"


def render_actions(actions: list[Action]) -> str:
    return "\n".join(f"{a.step + 1}. {a.date}: {a.description}" for a in actions) or "(none yet)"


def render_question(question: ReasoningQuestion) -> str:
    return f"[{question.kind}] {question.question}"


# ---------------------------------------------------------------- reply models

class _Profiles(BaseModel):
    profiles: list[Profile] = Field(min_length=1)


class _Action(BaseModel):
    date: str
    description: str = Field(min_length=1)
    facts: list[Fact] = []
    next_focus: str = ""
    stop: bool = False


class _Notes(BaseModel):
    notes: list[str] = Field(min_length=1)


class _Question(BaseModel):
    kind: str
    question: str = Field(min_length=1)
    label: str | int | float | bool  # a number or yes / no; typed, so grammar-based servers can take the schema
    derivation: list[str] | str = []


class _Answer(BaseModel):
    answer: str | int | float | bool | None


class _Topic(BaseModel):
    topic: str = Field(min_length=1)


def _parse_question(obj: dict[str, Any]) -> ReasoningQuestion:
    reply = _Question.model_validate(obj)
    kind = reply.kind.strip().lower().replace("-", "").replace(" ", "")
    kind = "commonsense" if kind.startswith("common") or kind in ("yesno", "boolean") else kind
    if kind not in ("math", "commonsense"):
        raise ReplyError("kind: must be 'math' or 'commonsense'")
    label = str(reply.label).strip()
    if kind == "commonsense":
        label = label.lower().rstrip(".")
        if label in ("true", "false"):
            label = "yes" if label == "true" else "no"
        if label not in ("yes", "no"):
            raise ReplyError("label: a commonsense question's label must be yes or no")
    elif not label:
        raise ReplyError("label: a math question's label must be an exact number")
    derivation = reply.derivation if isinstance(reply.derivation, list) else [reply.derivation]
    return ReasoningQuestion(kind=kind, question=reply.question.strip(), label=label,  # type: ignore[arg-type]
                             derivation=[str(d) for d in derivation if str(d).strip()])


def _parse_turn(obj: dict[str, Any]) -> UserTurn:
    turn = UserTurn.model_validate(obj)
    if not turn.user_message.strip():
        raise ReplyError("user_message: must not be empty")
    return turn


def _clamp(obj: dict[str, Any]) -> JudgeScore:
    data = dict(obj)
    for key in ("coherence", "fluency", "diversity"):
        if isinstance(data.get(key), (int, float)):
            data[key] = min(5.0, max(1.0, float(data[key])))
    return JudgeScore.model_validate(data)


# ---------------------------------------------------------------- the backend

class OpenAIAgentBackend:
    name = "openai"

    def __init__(self, settings: Settings, chat_model: BaseChatModel | None = None,
                 solver_models: dict[str, BaseChatModel] | None = None) -> None:
        self.settings = settings
        self.llm = OpenAIBackend(settings, chat_model)
        self._solver_models = dict(solver_models or {})
        self._solvers: dict[str, OpenAIBackend] = {}

    def solver(self, name: str) -> OpenAIBackend:
        """The backend that plays one solver: the run's model settings with that model name."""
        if name not in self._solvers:
            if name in self._solver_models:
                self._solvers[name] = OpenAIBackend(self.settings, self._solver_models[name])
            elif name == self.settings.model:
                self._solvers[name] = self.llm
            else:
                self._solvers[name] = OpenAIBackend(self.settings.model_copy(update={"model": name}),
                                                    self.llm.caller.router.given_model)
        return self._solvers[name]

    async def settle(self) -> list[str]:
        return await self.llm.settle()

    def record(self) -> dict[str, Any]:
        return self.llm.record()

    async def aclose(self) -> None:
        for backend in {id(b): b for b in [self.llm, *self._solvers.values()]}.values():
            await backend.aclose()

    async def generate_profiles(self, request: ProfileRequest) -> tuple[list[Profile], Usage]:
        avoid = "\n".join(f"- {p.role}; wants to {p.intent}" for p in request.avoid) or "(none yet)"
        prompt = load_prompt("user_generator").render(scenario=request.scenario, count=request.count, avoid=avoid)
        profiles, usage = await self.llm.ask("user_generator", [HumanMessage(content=prompt)],
                                             lambda obj: _Profiles.model_validate(obj).profiles, _Profiles)
        return profiles[: request.count], usage

    async def act(self, request: ActRequest) -> tuple[Action, Usage]:
        if request.must_stop:
            rule = "This is your last action: set stop to true."
        elif not request.may_stop:
            rule = "You are not done yet: set stop to false."
        else:
            rule = "Set stop to true once what you set out to do is done."
        prompt = load_prompt("user_agent").render(
            scenario=request.scenario, profile=render_profile(request.profile), memory=render_memory(request.memory),
            actions=render_actions(request.actions), focus=request.focus, knowledge=render_knowledge(request.knowledge),
            stop_rule=rule, step_number=request.step + 1)

        def parse(obj: dict[str, Any]) -> Action:
            reply = _Action.model_validate(obj)
            stop = request.must_stop or (reply.stop and request.may_stop)
            return Action(step=request.step, date=reply.date, focus=request.focus, description=reply.description,
                          facts=reply.facts, sources=[c.chunk_id for c in request.knowledge],
                          next_focus=reply.next_focus, stop=stop)

        return await self.llm.ask("user_agent", [HumanMessage(content=prompt)], parse, _Action)

    async def reflect(self, request: ReflectRequest) -> tuple[Memory, Usage]:
        prompt = load_prompt("user_agent_reflect").render(
            profile=render_profile(request.profile), memory=render_memory(request.memory),
            action=f"{request.action.date}: {request.action.description}",
            knowledge=render_knowledge(request.knowledge))
        notes, usage = await self.llm.ask("user_agent_reflect", [HumanMessage(content=prompt)],
                                          lambda obj: _Notes.model_validate(obj).notes, _Notes)
        memory = Memory(notes=[*request.memory.notes, *notes], facts=[*request.memory.facts, *request.action.facts])
        return memory, usage

    async def user_turn(self, request: AgentTurnRequest) -> tuple[UserTurn, Usage]:
        if request.mode == "direct":
            persona, actions, memory = "(someone in this setting who wants help)", "(not given)", "(not given)"
        else:
            persona = render_profile(request.profile)
            actions = render_actions(request.actions) if request.mode == "actions" else "(not given)"
            memory = render_memory(request.memory) if request.mode == "actions" else "(not given)"
        if not request.messages:
            opening = "This is the first message of the conversation."
        elif request.last_turn:
            opening = "This is your last message: wrap up and set is_task_complete to true."
        else:
            opening = "The conversation is under way: react to the assistant's latest reply."
        system = load_prompt("user_agent_turn").render(scenario=request.scenario, persona=persona, actions=actions,
                                                       memory=memory, knowledge=render_knowledge(request.knowledge),
                                                       opening=opening, style=request.style.render())
        transcript = render_transcript(request.messages, user="You", result_chars=None)
        text = (f"The conversation so far (your messages are marked You):\n\n{transcript}\n\nWrite your next message."
                if request.messages else "Write your first message.")
        return await self.llm.ask("user_agent_turn", [SystemMessage(content=system), HumanMessage(content=text)],
                                  _parse_turn, UserTurn, temperature=request.style.temperature)

    async def answer(self, request: KnowledgeAnswerRequest) -> tuple[AIMessage, Usage]:
        system = load_prompt("knowledge_assistant").render(scenario=request.scenario,
                                                           knowledge=render_knowledge(request.knowledge),
                                                           style=request.style.render())
        reply = await self.llm.caller.chat("knowledge_assistant", [SystemMessage(content=system), *request.messages],
                                           temperature=request.style.temperature)
        return AIMessage(content=reply.text, additional_kwargs=reply.additional_kwargs), usage_of(reply)

    async def make_question(self, request: ReasoningQuestionRequest) -> tuple[ReasoningQuestion, Usage]:
        previous = reference = ""
        if request.previous is not None:
            previous = (f"\nAn earlier question about this conversation turned out too easy (every solver got it):\n"
                        f"{render_question(request.previous)}\nWrite a harder one that needs more steps.\n")
        if request.reference is not None:
            reference = (f"\nA question about another conversation that solvers found hard; use it as a model of the "
                         f"kind of reasoning to ask for (not its facts):\n{render_question(request.reference)}\n")
        prompt = load_prompt("question_generator").render(scenario=request.scenario, transcript=request.transcript,
                                                          previous=previous, reference=reference)
        question, usage = await self.llm.ask("question_generator", [HumanMessage(content=prompt)], _parse_question,
                                              _Question)
        if request.reference is not None:
            question.reference = request.reference.question
        return question, usage

    async def solve(self, request: SolveRequest) -> tuple[str, Usage]:
        fmt = ("Answer with one exact number." if request.question.kind == "math" else "Answer with yes or no.")
        prompt = load_prompt("solver").render(transcript=request.transcript, question=request.question.question,
                                              format=fmt)
        return await self.solver(request.solver).ask(
            "solver", [HumanMessage(content=prompt)], lambda obj: str(_Answer.model_validate(obj).answer), _Answer)

    async def judge_quality(self, request: QualityJudgeRequest) -> tuple[JudgeScore, Usage]:
        prompt = load_prompt("quality_judge").render(scenario=request.scenario, transcript=request.transcript)
        return await self.llm.ask("quality_judge", [HumanMessage(content=prompt)], _clamp, JudgeScore)

    async def topic(self, request: TopicRequest) -> tuple[str | None, Usage]:
        prompt = load_prompt("topic_summary").render(transcript=request.transcript)
        topic, usage = await self.llm.ask("topic_summary", [HumanMessage(content=prompt)],
                                          lambda obj: _Topic.model_validate(obj).topic.strip().lower(), _Topic)
        return topic, usage


