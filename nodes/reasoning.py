"""The grounded dialogue (user agent ⇄ knowledge assistant), the reasoning question derived from it,
and the hardening loop's nodes: solve with k solvers, triage by accuracy, regenerate easy questions
from the most similar hard problem."""

from __future__ import annotations

import asyncio

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.runtime import Runtime

from backends.protocols import AgentTurnRequest, KnowledgeAnswerRequest, ReasoningQuestionRequest, SolveRequest
from knowledge.embedder import get_embedder
from knowledge.retriever import VectorIndex
from nodes.user_agent import agent_backend_of, reasoning_settings, retrieve
from state.agent import (BankEntry, Difficulty, DifficultyRound, HardeningEntry, HardeningState, ItemState,
                         SolverAnswer)
from state.arithmetic import answer_matches
from state.config import Settings

SOLVE_CONCURRENCY = 16


def transcript_of(messages: list[AnyMessage]) -> str:
    """The dialogue as plain text, one `User:` / `Assistant:` line per message."""
    lines = []
    for message in messages:
        if isinstance(message, HumanMessage):
            lines.append(f"User: {message.text}")
        elif isinstance(message, AIMessage) and message.text.strip():
            lines.append(f"Assistant: {message.text}")
    return "\n".join(lines)


# ---------------------------------------------------------------- the dialogue

async def agent_user(state: ItemState, runtime: Runtime[Settings]) -> dict:
    settings = reasoning_settings(runtime)
    if state.user_turns >= settings.max_dialogue_turns:
        return {"ended_by_budget": True}
    profile = state.profile if state.mode != "direct" else None
    last_reply = next((m.text for m in reversed(state.messages) if isinstance(m, AIMessage)), "")
    query = last_reply or state.focus or (profile.problems[0] if profile else state.scenario)
    request = AgentTurnRequest(
        scenario=state.scenario, mode=state.mode, profile=profile,
        actions=state.actions if state.mode == "actions" else [],
        memory=state.memory, messages=state.messages, knowledge=retrieve(state.corpus, query, settings),
        turn=state.user_turns, last_turn=state.user_turns + 1 >= settings.max_dialogue_turns,
        style=settings.prompt_params.user, rng_key=f"{state.seed}:user:{state.user_turns}")
    turn, usage = await agent_backend_of(runtime, state.backend).user_turn(request)
    if turn.is_task_complete and not any(isinstance(m, AIMessage) for m in state.messages):
        turn = turn.model_copy(update={"is_task_complete": False})  # nobody has answered yet
    return {"messages": [HumanMessage(content=turn.user_message)], "last_user_turn": turn,
            "user_turns": state.user_turns + 1, "usage": usage}


async def knowledge_assistant(state: ItemState, runtime: Runtime[Settings]) -> dict:
    settings = reasoning_settings(runtime)
    last = next((m.text for m in reversed(state.messages) if isinstance(m, HumanMessage)), "")
    closing = state.last_user_turn is not None and state.last_user_turn.is_task_complete
    request = KnowledgeAnswerRequest(scenario=state.scenario, messages=state.messages,
                                     knowledge=retrieve(state.corpus, last, settings), closing=closing,
                                     style=settings.prompt_params.assistant, rng_key=f"{state.seed}:assistant:{state.user_turns}")
    message, usage = await agent_backend_of(runtime, state.backend).answer(request)
    return {"messages": [message], "usage": usage}


async def question_generator(state: ItemState, runtime: Runtime[Settings]) -> dict:
    request = ReasoningQuestionRequest(scenario=state.scenario, profile=state.profile, actions=state.actions,
                                       transcript=transcript_of(state.messages), rng_key=f"{state.seed}:question:0")
    question, usage = await agent_backend_of(runtime, state.backend).make_question(request)
    return {"question": question, "usage": usage}


# ---------------------------------------------------------------- the hardening loop

def status_of(accuracy: float, threshold: float) -> Difficulty:
    if accuracy >= 1.0:
        return "easy"
    return "hard" if accuracy < threshold else "medium"


async def solve(state: HardeningState, runtime: Runtime[Settings]) -> dict:
    """Every question without answers yet, by every solver."""
    backend = agent_backend_of(runtime, state.backend)
    sem = asyncio.Semaphore(SOLVE_CONCURRENCY)

    async def one(entry: HardeningEntry, solver: str):
        async with sem:
            request = SolveRequest(solver=solver, transcript=entry.transcript, question=entry.question,
                                   rng_key=f"{state.seed}:solve:{entry.item_id}:{state.round}:{solver}")
            return await backend.solve(request)

    pending = [i for i, e in enumerate(state.entries) if e.accuracy is None]
    jobs = [one(state.entries[i], s) for i in pending for s in state.solvers]
    results = await asyncio.gather(*jobs)
    entries = list(state.entries)
    usage = None
    k = len(state.solvers)
    for n, i in enumerate(pending):
        entry = entries[i]
        answers = []
        for solver, (text, used) in zip(state.solvers, results[n * k:(n + 1) * k]):
            usage = used if usage is None else usage + used
            # Method B's facts check: the item's computed answer (its label) is the one fact the solver must state
            answers.append(SolverAnswer(solver=solver, answer=text,
                                        correct=answer_matches(text, entry.question.label, entry.question.kind)))
        accuracy = round(sum(a.correct for a in answers) / k, 4)
        entries[i] = entry.model_copy(update={"answers": answers, "accuracy": accuracy})
    update: dict = {"entries": entries}
    if usage is not None:
        update["usage"] = usage
    return update


async def triage(state: HardeningState, runtime: Runtime[Settings]) -> dict:
    """Classify every question, bank the hard ones, and record this round's easy ratio."""
    entries, bank = [], list(state.bank)
    banked = {(b.item_id, b.question.question) for b in bank}
    for entry in state.entries:
        assert entry.accuracy is not None, "every question is solved before triage"
        status = status_of(entry.accuracy, state.threshold)
        history = list(entry.history)
        if entry.status is None:  # solved this round (new, or regenerated)
            history.append(DifficultyRound(round=state.round, question=entry.question.question,
                                           label=entry.question.label, accuracy=entry.accuracy, status=status,
                                           answers=entry.answers))
        if status == "hard" and (entry.item_id, entry.question.question) not in banked:
            bank.append(BankEntry(item_id=entry.item_id, round=state.round, accuracy=entry.accuracy,
                                  question=entry.question))
            banked.add((entry.item_id, entry.question.question))
        entries.append(entry.model_copy(update={"status": status, "history": history}))
    easy = sum(e.status == "easy" for e in entries)
    ratio = round(easy / len(entries), 4) if entries else 0.0
    return {"entries": entries, "bank": bank, "easy_ratio": [*state.easy_ratio, ratio]}


async def regenerate(state: HardeningState, runtime: Runtime[Settings]) -> dict:
    """Each easy question is rewritten from its dialogue, modelled on the most similar hard problem."""
    settings = reasoning_settings(runtime)
    backend = agent_backend_of(runtime, state.backend)
    easy = [i for i, e in enumerate(state.entries) if e.status == "easy"]
    nearest: dict[int, int] = {}
    if state.bank and easy:
        embedder = get_embedder(settings.embedding_model)
        index = VectorIndex(embedder.dim)
        index.add(embedder.encode([b.question.question for b in state.bank]))
        _, ids = index.search(embedder.encode([state.entries[i].transcript for i in easy]), 1)
        nearest = {i: int(ids[n][0]) for n, i in enumerate(easy) if ids[n][0] >= 0}
    next_round = state.round + 1

    async def one(i: int):
        entry = state.entries[i]
        reference = state.bank[nearest[i]].question if i in nearest else None
        request = ReasoningQuestionRequest(scenario=entry.scenario, profile=entry.profile, actions=entry.actions,
                                           transcript=entry.transcript, previous=entry.question, reference=reference,
                                           rng_key=f"{state.seed}:harden:{entry.item_id}:{next_round}")
        return await backend.make_question(request)

    results = await asyncio.gather(*(one(i) for i in easy))
    entries = list(state.entries)
    usage = None
    for i, (question, used) in zip(easy, results):
        usage = used if usage is None else usage + used
        entries[i] = entries[i].model_copy(update={"question": question, "answers": [], "accuracy": None,
                                                   "status": None, "regenerations": entries[i].regenerations + 1})
    update: dict = {"entries": entries, "round": next_round}
    if usage is not None:
        update["usage"] = usage
    return update
