"""`--split tasks`: one sample per task, carrying the conversation from its start up to that task's end.

A dialogue of three tasks becomes three samples whose last one is the whole dialogue; with `--max-tokens` the
longer ones may be left out while the shorter keep the early tasks. A task ends where the next one's first user
message begins (after the assistant's acknowledgement of the closing user), so every sample ends with an
assistant message and alternates, as the dialogue does.
"""

from __future__ import annotations

from results.exporters.source import SourceDialogue

SEPARATOR = "#task"


def _ends_well(messages: list[dict]) -> bool:
    last = messages[-1] if messages else {}
    return last.get("role") == "assistant" and not last.get("tool_calls") and bool(str(last.get("content") or "").strip())


def task_samples(dialogue: SourceDialogue) -> list[SourceDialogue]:
    """The samples, in task order, ids `<dialogue id>#task<N>`; the dialogue itself when it has one task or none."""
    starts = [int(s) for s in dialogue.metadata.get("task_message_starts") or []]
    if len(starts) < 2:
        return [dialogue]
    # task_message_starts index the dialogue's state, which holds a continued conversation's prelude but not the
    # system message a fresh dialogue is given in front
    offset = 0 if dialogue.metadata.get("prelude_messages") else 1
    ends = [s + offset for s in starts[1:]] + [len(dialogue.messages)]
    samples: list[SourceDialogue] = []
    for number, end in enumerate(ends, 1):
        messages = dialogue.messages[:end]
        while messages and not _ends_well(messages):  # a rejected dialogue may stop mid-task
            messages = messages[:-1]
        if not messages or (samples and len(messages) == len(samples[-1].messages)):
            continue
        samples.append(dialogue.model_copy(update={"id": f"{dialogue.id}{SEPARATOR}{number}", "messages": messages}))
    return samples
