"""Question poser node (task-oriented pipeline): the task, asked directly in one user message."""

from __future__ import annotations

from langchain_core.messages import HumanMessage

from state.dialogue import DialogueState, UserTurn


def pose_question(state: DialogueState) -> dict:
    """The whole request at once; the user's part is then done (the 'efficiency trap' baseline)."""
    task = state.current_task
    assert task is not None, "the task generator runs before the question"
    turn = UserTurn(user_message=task.goal, is_task_complete=True)
    return {"messages": [HumanMessage(content=task.goal)], "last_user_turn": turn,
            "user_turns_in_task": state.user_turns_in_task + 1, "steps_in_turn": 0}
