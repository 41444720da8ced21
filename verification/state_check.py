"""The state check: what a task's own calls changed (its real diff, from the live sandboxes' change logs or
a replay on fresh ones) against the task's goal diffs."""

from __future__ import annotations

from environment.sources.pool import DialogueSandboxes
from environment.state_match import match
from state.dialogue import ExecutedCall
from state.sources import Sources
from state.tasks import Task
from state.tools import Tool
from state.verification import StateCheck, StateDiff

def real_diff(source_name: Sources, seed: int, earlier: list[ExecutedCall], this_task: list[ExecutedCall],
              tools: dict[str, Tool]) -> tuple[StateDiff, list[str]]:
    """What the task's own calls changed, replayed on fresh sandboxes of the dialogue's sources (a saved
    trial rescored, a kind that cannot capture its changes): the earlier tasks' calls replayed, a mark, this
    task's calls replayed, and the changes since the mark (blocking: run it in a worker thread); and the ids of
    replayed calls that gave another result than recorded (a source that does not replay the same is
    reported, never hidden). Reads change nothing, so a task without a successful write has an empty diff."""
    if not any(c.mode == "write" and c.result.ok for c in this_task):
        return StateDiff(), []
    boxes = DialogueSandboxes(source_name, seed)
    try:
        boxes.replay(earlier, tools)
        boxes.open_for(tools[c.tool] for c in this_task if c.tool in tools)
        before = boxes.mark()
        boxes.replay(this_task, tools)
        return boxes.since(before), list(boxes.diverged)
    finally:
        boxes.close()


def live_diff(boxes: DialogueSandboxes, earlier: list[ExecutedCall], this_task: list[ExecutedCall],
              tools: dict[str, Tool]) -> tuple[StateDiff, list[str]]:
    """What the task's own calls changed, read from the change logs of the dialogue's live sandboxes (which hold
    every recorded call: the pool's checkout); where a sandbox does not capture its changes, from a replay on
    fresh sandboxes (`real_diff`). Blocking: run it in a worker thread."""
    if not any(c.mode == "write" and c.result.ok for c in this_task):
        return StateDiff(), []
    found = boxes.changes_since_call(len(earlier))
    if found is None:
        return real_diff(boxes.source_name, boxes.seed, earlier, this_task, tools)
    return found, []


def check_state(task: Task, actual: StateDiff) -> StateCheck:
    if task.expected is None:
        return StateCheck(status="unchecked", real_diff=actual)
    chosen, found = match(task.expected.alternatives, actual)
    if chosen is not None:
        return StateCheck(status="match", real_diff=actual, alternative=chosen)
    return StateCheck(status="mismatch", real_diff=actual, differences=found)
