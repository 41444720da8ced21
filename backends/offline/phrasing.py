"""Words for the offline backend: entity names, values and varied sentence templates."""

from __future__ import annotations

import random
from typing import Any

from environment.sqlnames import singular, snake


def entity(table: str) -> str:
    return singular(snake(table, "t")).replace("_", " ")


def plural(table: str) -> str:
    return snake(table, "t").replace("_", " ")


def words(column: str) -> str:
    return snake(column, "c").replace("_", " ")


def show(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # exactly as the JSON result shows it, so every figure stays checkable
    if value is None:
        return "none"
    return str(value)


def describe_row(row: dict[str, Any], limit: int = 6) -> str:
    """A row in plain words, every value copied from the tool result."""
    parts = [f"{words(k)} {show(v)}" for k, v in row.items() if v is not None][:limit]
    return ", ".join(parts)


def pick(rng: random.Random, options: list[str]) -> str:
    return options[rng.randrange(len(options))]


OPENINGS = ["Hi!", "Hello!", "Hi there!", "Good morning!", "Hey!", "Good afternoon!"]
REQUEST_FRAMES = [
    "{ask}",
    "Could you help me with something? {ask}",
    "I need a hand with our records. {ask}",
    "Quick question: {ask}",
]
JOINERS = [" Also, ", " And while you're at it, ", " After that, ", " Then, "]
FEEDBACK = [
    "Thanks, that's helpful.",
    "Great, thank you.",
    "Perfect, that's what I needed.",
    "Got it, thanks.",
    "Okay, that makes sense.",
    "Thanks for checking.",
]
NEXT_FRAMES = ["{feedback} Next, {ask_lower}", "{feedback} {ask}", "{feedback} One more thing: {ask_lower}"]
CONFIRM_ASKS = [
    "Just to be sure, can you double-check that the change really went through?",
    "Before I go, could you confirm the update is saved?",
    "Can you check once more that the record now shows the change?",
]
CLOSINGS = [
    "That's everything I needed, thanks!",
    "That solves it, thank you!",
    "Great, that's all for now. Thanks!",
    "Perfect, I'm all set. Thanks for your help!",
]
ACKNOWLEDGEMENTS = [
    "You're welcome! Glad I could help.",
    "Happy to help. Have a good day!",
    "You're welcome. Let me know if anything else comes up.",
    "Glad that's sorted. Take care!",
]
FOLLOW_UP_FRAMES = ["One more thing: {ask_lower}", "Oh, while I have you: {ask_lower}",
                    "Actually, there's something else. {ask}", "Before I go, {ask_lower}"]
RETRY_ASKS = [
    "Hmm, that didn't seem to work. Could you try that again or tell me what went wrong?",
    "That doesn't look right to me. Can you check it again?",
]
