"""Shared, process-cached inputs of the method-B tests: the example scenario, one offline `reasoning`
run and one offline `ablate` run through the CLI, and a scripted chat model that plays every role."""

from __future__ import annotations

import functools
import json
import re
import tempfile
from pathlib import Path

from langchain_core.messages import BaseMessage

from tests.conftest import ROOT
from tests.roles import role_of_text

EXAMPLE = ROOT / "examples" / "scenarios" / "household_budget"
SCENARIO = EXAMPLE / "scenario.md"
CORPUS = EXAMPLE / "corpus"


@functools.cache
def reasoning_run() -> tuple[Path, int, str]:
    """12 items over 6 profiles, offline, seed 3: (run folder, exit code, printed output)."""
    import io
    from contextlib import redirect_stdout

    from graphs.run import main

    out = Path(tempfile.mkdtemp(prefix="forge-reasoning-")) / "run"
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = main(["reasoning", "--scenario", str(SCENARIO), "--corpus", str(CORPUS), "--users", "6",
                     "--dialogues", "12", "--seed", "3", "--out", str(out)])
    return out, code, buffer.getvalue()


def items(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]


def _text(messages: list[BaseMessage]) -> str:
    return "\n".join(m.text for m in messages)


def play_every_role(messages: list[BaseMessage]) -> str:
    """A stand-in LLM for method B: answers each of our roles (tests/roles.py) with a well-formed reply."""
    text, role = _text(messages), role_of_text(messages[0].text if messages else "")
    if role == "user_generator":
        count = int(re.search(r"Invent (\d+) new people", text).group(1))
        return json.dumps({"profiles": [
            {"name": f"Person {i}", "role": ["baker", "nurse", "student", "pilot"][i % 4] + f" number {i}",
             "intent": ["save for a bike", "cut the power bill", "pay off a card", "plan childcare"][i % 4],
             "problems": ["compare prices", "find the fees"], "traits": ["calm"],
             "facts": [{"name": "budget", "value": 500, "unit": "$", "label": "monthly budget"}]}
            for i in range(count)]})
    if role == "user_agent":
        step = int(re.search(r"for example a(\d+)_cost", text).group(1))
        return json.dumps({"date": f"2025-04-{step:02d}", "description": f"Bought {step} dozen eggs at $3.60: "
                           f"${3.6 * step:.2f}.", "facts": [{"name": f"a{step}_cost", "value": round(3.6 * step, 2),
                                                             "unit": "$", "label": "eggs"}],
                           "next_focus": "milk prices", "stop": False})
    if role == "user_agent_reflect":
        return json.dumps({"notes": ["Eggs cost $3.60 a dozen at the co-op."]})
    if role == "user_agent_turn":
        done = "This is your last message" in text or text.count("Assistant:") >= 2
        return json.dumps({"user_message": "I bought eggs for $3.60 a dozen. Is that a good price?",
                           "is_task_complete": done})
    if role == "knowledge_assistant":
        return "Eggs are $3.60 per dozen at the co-op, so that matches the list price."
    if role == "question_generator":
        return json.dumps({"kind": "math", "question": "How much would two more dozen eggs cost?", "label": "7.2",
                           "derivation": ["2 x 3.60 = 7.20"]})
    if role == "solver":
        return json.dumps({"answer": "7.20"})
    if role == "quality_judge":
        return json.dumps({"coherence": 4, "fluency": 5, "diversity": 3, "reasoning": "fine"})
    if role == "topic_summary":
        return json.dumps({"topic": "egg prices"})
    raise AssertionError(f"unexpected role {role}: {text[:200]}")
