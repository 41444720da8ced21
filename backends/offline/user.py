"""The offline user simulator: reveals the latent goal one or two subtasks at a time."""

from __future__ import annotations

import random

from langchain_core.messages import AIMessage, HumanMessage

from backends.protocols import UserTurnRequest
from backends.offline.phrasing import CLOSINGS, CONFIRM_ASKS, FEEDBACK, FOLLOW_UP_FRAMES, JOINERS, NEXT_FRAMES, \
    OPENINGS, REQUEST_FRAMES, pick
from backends.offline.persona_style import styled
from backends.offline.plan import asked_subtasks, is_confirmation, norm
from state.dialogue import UserTurn


def _join(rng: random.Random, asks: list[str]) -> str:
    text = asks[0][0].upper() + asks[0][1:]
    for ask in asks[1:]:
        text += pick(rng, JOINERS) + ask
    return text


def _next(rng: random.Random, asks: list[str]) -> str:
    """Feedback on the last answer, then the next request."""
    ask = _join(rng, asks)
    return pick(rng, NEXT_FRAMES).format(feedback=pick(rng, FEEDBACK), ask=ask, ask_lower=ask[0].lower() + ask[1:])


def user_turn(request: UserTurnRequest) -> UserTurn:
    turn = _turn(request)
    persona = request.task.persona
    if persona is None:
        return turn
    # a stream of its own: the plain user's choices stay as they are, the persona only frames them
    rng = random.Random(f"{request.rng_key}:persona")
    first = request.user_turn == 0 and request.task_start == 0
    return turn.model_copy(update={"user_message": styled(turn.user_message, persona, rng, first,
                                                          turn.is_task_complete)})


def _turn(request: UserTurnRequest) -> UserTurn:
    rng = random.Random(request.rng_key)
    task = request.task
    span = request.messages[request.task_start:]
    said = [m.text for m in span if isinstance(m, HumanMessage)]
    revealed = sorted({i for text in said for i in asked_subtasks(task, text)})
    remaining = [i for i in range(len(task.subtasks)) if i not in revealed]
    count = 2 if len(remaining) >= 2 and rng.random() < 0.5 else 1
    nxt = [task.subtasks[i].ask for i in remaining[:count]]

    if request.user_turn == 0 or not said:
        if not nxt:
            return UserTurn(user_message=pick(rng, CLOSINGS), is_task_complete=True)
        before = request.messages[-1] if request.task_start and request.messages else None
        if isinstance(before, AIMessage) and before.text and not before.tool_calls:
            # picking up after the assistant's last words (the close of an earlier task), as a person would
            ask = _join(rng, nxt)
            frame = pick(rng, FOLLOW_UP_FRAMES)
            return UserTurn(user_message=frame.format(ask=ask, ask_lower=ask[0].lower() + ask[1:]))
        opening = pick(rng, OPENINGS) + " " if request.task_start == 0 else ""
        frame = pick(rng, REQUEST_FRAMES)
        body = frame.format(ask=_join(rng, nxt)) if frame == "{ask}" else frame.format(ask=nxt[0][0].upper()
                                                                                      + _join(rng, nxt)[1:])
        return UserTurn(user_message=opening + body)

    feedback = pick(rng, FEEDBACK)
    last_answer = next((m for m in reversed(span) if isinstance(m, AIMessage) and not m.tool_calls), None)
    held = task.held_back
    if held is not None and held.subtask in revealed and last_answer is not None and "?" in last_answer.text \
            and not any(norm(held.reveal) in norm(text) for text in said):
        return UserTurn(user_message=held.reveal)  # asked for the value it held back: now it gives it
    if nxt:
        return UserTurn(user_message=_next(rng, nxt))
    writes = any(s.changes_data for s in task.subtasks)
    confirmed = any(is_confirmation(text) for text in said)
    if writes and not confirmed and last_answer is not None and rng.random() < 0.6:
        return UserTurn(user_message=f"{feedback} {pick(rng, CONFIRM_ASKS)}")
    return UserTurn(user_message=pick(rng, CLOSINGS), is_task_complete=True)
