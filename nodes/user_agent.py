"""The user agent's loop: observe (retrieve knowledge for the current focus), act (one concrete
action), reflect (fold the action and what was learned into memory)."""

from __future__ import annotations

from langgraph.runtime import Runtime

from backends.protocols import ActRequest, AgentBackend, ReflectRequest
from backends.registry import agent_backend_for
from knowledge.retriever import retriever_for
from state.agent import KnowledgeChunk, Memory, ReasoningSettings, UserAgentState
from state.config import Settings


def reasoning_settings(runtime: Runtime[Settings] | None) -> ReasoningSettings:
    context = getattr(runtime, "context", None)
    if isinstance(context, ReasoningSettings):
        return context
    if isinstance(context, Settings):
        return ReasoningSettings(**context.model_dump())
    if isinstance(context, dict):
        return ReasoningSettings(**context)
    return ReasoningSettings()


def agent_backend_of(runtime: Runtime[Settings] | None, backend: str = "") -> AgentBackend:
    """The run's agent backend, unless the graph's own input names one."""
    settings = reasoning_settings(runtime)
    if backend and backend != settings.backend:
        settings = settings.model_copy(update={"backend": backend})
    return agent_backend_for(settings)


def retrieve(corpus: str, query: str, settings: ReasoningSettings) -> list[KnowledgeChunk]:
    if not corpus or not query.strip():
        return []
    return retriever_for(corpus, settings.embedding_model).search(query, settings.retrieve_k)


def initial_memory(state: UserAgentState) -> Memory:
    """At the start the agent remembers only who it is: its intent, its problems and its own numbers."""
    profile = state.profile
    if profile is None:
        return Memory()
    return Memory(notes=[f"I want to {profile.intent}.", *(f"I need to {p}." for p in profile.problems)],
                  facts=list(profile.facts))


async def observe(state: UserAgentState, runtime: Runtime[Settings]) -> dict:
    settings = reasoning_settings(runtime)
    profile = state.profile
    assert profile is not None, "the user agent needs a profile"
    focus = state.focus or profile.problems[0]
    update: dict = {"focus": focus,
                    "observations": retrieve(state.corpus, f"{focus} ({profile.intent})", settings)}
    if not state.actions and not state.memory.size:
        update["memory"] = initial_memory(state)
    return update


async def act(state: UserAgentState, runtime: Runtime[Settings]) -> dict:
    settings = reasoning_settings(runtime)
    assert state.profile is not None
    step = len(state.actions)
    request = ActRequest(scenario=state.scenario, profile=state.profile, memory=state.memory, actions=state.actions,
                         knowledge=state.observations, focus=state.focus, step=step,
                         must_stop=step + 1 >= settings.max_actions, may_stop=step + 1 >= settings.min_actions,
                         rng_key=f"{state.seed}:act:{step}")
    action, usage = await agent_backend_of(runtime, state.backend).act(request)
    return {"actions": [*state.actions, action], "usage": usage}


async def reflect(state: UserAgentState, runtime: Runtime[Settings]) -> dict:
    settings = reasoning_settings(runtime)
    assert state.profile is not None and state.actions, "reflect follows an action"
    action = state.actions[-1]
    request = ReflectRequest(profile=state.profile, memory=state.memory, action=action,
                             knowledge=state.observations, rng_key=f"{state.seed}:reflect:{action.step}")
    memory, usage = await agent_backend_of(runtime, state.backend).reflect(request)
    problems = state.profile.problems
    done = action.stop or len(state.actions) >= settings.max_actions
    return {"memory": memory, "memory_history": [*state.memory_history, memory],
            "focus": action.next_focus or problems[len(state.actions) % len(problems)],
            "agent_done": done, "usage": usage}
