"""The simulated user's conduct: a user that quotes its instructions or repeats itself while the assistant
has not moved is a simulator fault, whatever the assistant did."""

from __future__ import annotations

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage

from verification.facts import norm

# Lines of the user simulator's own instructions (prompts/user_simulator.md) that a person would never say.
SCAFFOLDING = ("hidden from the assistant", "never paste it", "what you want (", "the parts of it, in the order",
               "how to behave:", "reveal your goal a piece at a time", "is_task_complete", "user_message",
               "you might say:", "answer with one json object", "stay in character")


def user_fault(messages: list[AnyMessage]) -> str:
    """A user message that quotes its instructions' scaffolding, or repeats the user's previous message
    verbatim while the assistant has not moved (no tool call between them): a simulator fault; '' when the
    user behaved."""
    previous = ""
    moved = False
    for message in messages:
        if isinstance(message, HumanMessage):
            text = norm(message.text)
            quoted = next((s for s in SCAFFOLDING if s in text), None)
            if quoted:
                return f"the user quoted its instructions' scaffolding ({quoted!r}): {message.text[:120]!r}"
            if text and text == previous and not moved:
                return f"the user repeated itself verbatim while the assistant had not moved: {message.text[:120]!r}"
            previous, moved = text, False
        elif isinstance(message, AIMessage) and message.tool_calls:
            moved = True
    return ""
