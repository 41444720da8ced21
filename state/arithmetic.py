"""Evaluating a question's program over its facts, and matching answers to labels.

Shared by the offline question writer (labels), the offline solvers (with their flaws), the hardening
loop (is an answer right?) and the tests.
"""

from __future__ import annotations

import re
from typing import Callable

from state.agent import ProgramStep, ReasoningQuestion

OPS: dict[str, Callable[[float, float], float]] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
}
SYMBOL = {"add": "+", "sub": "-", "mul": "×", "div": "÷"}


def operand(env: dict[str, float], name: str) -> float:
    if name in env:
        return env[name]
    try:
        return float(name)
    except ValueError:
        raise KeyError(f"unknown operand {name!r}") from None


def run_program(program: list[ProgramStep], env: dict[str, float],
                transform: Callable[[int, float], float] | None = None) -> tuple[float, dict[str, float]]:
    """The last step's result and every intermediate value; `transform(i, value)` may alter a step's result."""
    env = dict(env)
    value = 0.0
    for i, step in enumerate(program):
        value = OPS[step.op](operand(env, step.left), operand(env, step.right))
        if transform is not None:
            value = transform(i, value)
        env[step.out] = value
    return value, env


def format_number(value: float) -> str:
    """Two decimals at most, no trailing zeros: 12.5, 30, 7.25."""
    text = f"{round(value + 0.0, 2):.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def label_of(question: ReasoningQuestion, value: float, env: dict[str, float]) -> str:
    if question.kind == "math":
        return format_number(value)
    limit = operand(env, question.threshold)
    ok = value <= limit + 1e-9 if question.compare == "<=" else value >= limit - 1e-9
    return "yes" if ok else "no"


def evaluate(question: ReasoningQuestion, transform: Callable[[int, float], float] | None = None,
             skip_last: bool = False) -> str:
    """The answer the question's program gives over its facts (optionally computed with a flaw)."""
    env = {f.name: f.value for f in question.facts}
    program = question.program[:-1] if skip_last and len(question.program) > 1 else question.program
    value, env = run_program(program, env, transform)
    return label_of(question, value, env)


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_YES_NO = re.compile(r"\b(yes|no)\b", re.I)


def parse_number(text: str) -> float | None:
    match = _NUMBER.search(text.replace("$", ""))
    if not match:
        return None
    try:
        return float(match.group(0).replace(",", ""))
    except ValueError:
        return None


def answer_matches(answer: str, label: str, kind: str) -> bool:
    """A solver's answer against the label: numbers within a cent, or the same yes / no. For method B's
    reasoning items this is the facts check (the computed answer is the required fact); dialogues over tools
    have theirs in verification/facts.py."""
    if kind == "commonsense":
        got = _YES_NO.search(answer or "")
        return bool(got) and got.group(1).lower() == label.strip().lower()
    want, got_number = parse_number(label), parse_number(answer or "")
    if want is None or got_number is None:
        return (answer or "").strip().lower() == label.strip().lower()
    return abs(want - got_number) <= 0.005 + 1e-9 * abs(want)
