"""Offline reasoning questions computed from the facts of an action sequence, solvers of different
strength, a heuristic quality judge.

Every label is the exact result of the question's program over its facts. The solvers run the same
program with a flaw (or none): `exact` is always right, `skip-step` forgets the last step of a
derivation of three steps or more, `rounder` rounds every intermediate result to whole units. So a
one-step question is easy, and a longer one with cents along the way is hard.
"""

from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass
from typing import Callable

from backends.protocols import QualityJudgeRequest, ReasoningQuestionRequest, SolveRequest
from state.agent import Action, Fact, JudgeScore, Profile, ProgramStep, ReasoningQuestion
from state.arithmetic import SYMBOL, evaluate, format_number, label_of, operand, run_program

S = ProgramStep


@dataclass(frozen=True)
class Template:
    name: str
    kind: str
    actions: int  # how many priced actions it needs
    needs_household: bool
    hard: bool
    build: Callable[[list[Action], str], tuple[str, list[ProgramStep], str, str]]
    """(question text, program, compare, threshold) from the chosen actions and the user's name."""


def _cost(a: Action) -> Fact:
    return next(f for f in a.facts if f.name.endswith("_cost"))


def _fact(a: Action, suffix: str) -> Fact:
    return next(f for f in a.facts if f.name.endswith(suffix))


def _what(a: Action) -> str:
    return f"the {_cost(a).label} on {a.date}"


def _total_two(acts, name):
    a, b = acts
    return (f"How much did {name} pay altogether for {_what(a)} and {_what(b)}?",
            [S(op="add", left=_cost(a).name, right=_cost(b).name, out="total")], "", "")


def _left_after_two(acts, name):
    a, b = acts
    return (f"After paying for {_what(a)} and {_what(b)}, how much of the monthly budget {name} mentioned is left?",
            [S(op="add", left=_cost(a).name, right=_cost(b).name, out="spent"),
             S(op="sub", left="budget", right="spent", out="left")], "", "")


def _fits_budget(acts, name):
    a, b, c = acts
    return (f"Do the three payments {name} described for {_what(a)}, {_what(b)} and {_what(c)} stay within the "
            f"monthly budget {name} gave?",
            [S(op="add", left=_cost(a).name, right=_cost(b).name, out="first_two"),
             S(op="add", left="first_two", right=_cost(c).name, out="spent")], "<=", "budget")


def _share_left(acts, name):
    a, b = acts
    return (f"If what remains of {name}'s monthly budget after {_what(a)} and {_what(b)} were split evenly among "
            f"everyone in the household, how much would each person get?",
            [S(op="add", left=_cost(a).name, right=_cost(b).name, out="spent"),
             S(op="sub", left="budget", right="spent", out="left"),
             S(op="div", left="left", right="household", out="share")], "", "")


def _weekly_average(acts, name):
    a, b, c = acts
    return (f"Suppose {name} spent the average of the payments for {_what(a)}, {_what(b)} and {_what(c)} every "
            f"week. What would four weeks of that cost?",
            [S(op="add", left=_cost(a).name, right=_cost(b).name, out="first_two"),
             S(op="add", left="first_two", right=_cost(c).name, out="sum"),
             S(op="div", left="sum", right="3", out="average"),
             S(op="mul", left="average", right="4", out="four_weeks")], "", "")


def _price_rise(acts, name):
    a, b = acts
    return (f"Suppose the unit price behind {_what(a)} rose by 10% and {name} bought the same quantity again at the "
            f"new price, and also paid the same amount as for {_what(b)} once more. What would the two cost together?",
            [S(op="mul", left=_fact(a, "_price").name, right="1.1", out="new_price"),
             S(op="mul", left=_fact(a, "_qty").name, right="new_price", out="new_cost"),
             S(op="add", left="new_cost", right=_cost(b).name, out="together")], "", "")


def _share_covers(acts, name):
    a, b, c = acts
    return (f"If the budget left after {_what(a)} and {_what(b)} were split evenly across {name}'s household, would "
            f"one person's share be enough to pay for {_what(c)}?",
            [S(op="add", left=_cost(a).name, right=_cost(b).name, out="spent"),
             S(op="sub", left="budget", right="spent", out="left"),
             S(op="div", left="left", right="household", out="share")], ">=", _cost(c).name)


TEMPLATES = [
    Template("total_two", "math", 2, False, False, _total_two),
    Template("left_after_two", "math", 2, False, False, _left_after_two),
    Template("fits_budget", "commonsense", 3, False, False, _fits_budget),
    Template("share_left", "math", 2, True, True, _share_left),
    Template("weekly_average", "math", 3, False, True, _weekly_average),
    Template("price_rise", "math", 2, False, True, _price_rise),
    Template("share_covers", "commonsense", 3, True, True, _share_covers),
]
BY_NAME = {t.name: t for t in TEMPLATES}


def _priced(actions: list[Action]) -> list[Action]:
    return [a for a in actions if any(f.name.endswith("_cost") for f in a.facts)]


def _profile_facts(profile: Profile | None) -> dict[str, Fact]:
    facts = {f.name: f for f in (profile.facts if profile else [])}
    facts.setdefault("budget", Fact(name="budget", value=600, unit="$", label="monthly budget"))
    facts.setdefault("household", Fact(name="household", value=1, unit="people", label="people in the household"))
    return facts


def _usable(t: Template, actions: list[Action], facts: dict[str, Fact]) -> bool:
    if len(actions) < t.actions:
        return False
    return not t.needs_household or facts["household"].value > 1


def _derivation(question: ReasoningQuestion) -> list[str]:
    env = {f.name: f.value for f in question.facts}
    lines = []
    _, values = run_program(question.program, env)
    for step in question.program:
        left, right = operand(values, step.left), operand(values, step.right)
        lines.append(f"{step.out} = {step.left} {SYMBOL[step.op]} {step.right} = {format_number(left)} "
                     f"{SYMBOL[step.op]} {format_number(right)} = {format_number(values[step.out])}")
    if question.kind == "commonsense":
        result = values[question.program[-1].out]
        limit = operand(values, question.threshold)
        lines.append(f"{format_number(result)} {question.compare} {format_number(limit)}? -> {question.label}")
    return lines


def build_question(template: Template, actions: list[Action], profile: Profile | None,
                   rng: random.Random, reference: str = "") -> ReasoningQuestion:
    priced = _priced(actions)
    facts = _profile_facts(profile)
    chosen = sorted(rng.sample(priced, template.actions), key=lambda a: a.step)
    name = profile.name if profile else "the user"
    text, program, compare, threshold = template.build(chosen, name)
    used = {s.left for s in program} | {s.right for s in program} | ({threshold} if threshold else set())
    pool = {**facts, **{f.name: f for a in chosen for f in a.facts}}
    question = ReasoningQuestion(kind=template.kind, question=text, label="", template=template.name,  # type: ignore[arg-type]
                                 facts=[pool[n] for n in sorted(used) if n in pool], program=program,
                                 compare=compare, threshold=threshold, reference=reference)  # type: ignore[arg-type]
    question.label = evaluate(question)
    question.derivation = _derivation(question)
    return question


def make_question(request: ReasoningQuestionRequest) -> ReasoningQuestion:
    rng = random.Random(request.rng_key)
    priced = _priced(request.actions)
    facts = _profile_facts(request.profile)
    usable = [t for t in TEMPLATES if _usable(t, priced, facts)]
    if not usable:
        raise ValueError("a reasoning question needs at least two priced actions")
    reference = request.reference.question if request.reference else ""
    if request.previous is None:
        easy = [t for t in usable if not t.hard] or usable
        weights = [1.0 if t.kind == "math" else 0.6 for t in easy]
        template = rng.choices(easy, weights=weights)[0]
        return build_question(template, request.actions, request.profile, rng)
    # a harder question: the reference hard problem's shape if it fits this dialogue, else another hard one
    previous = request.previous.template
    ref = BY_NAME.get(request.reference.template) if request.reference else None
    if ref is not None and ref.hard and ref in usable and ref.name != previous:
        template = ref
    else:
        hard = [t for t in usable if t.hard and t.name != previous] or [t for t in usable if t.name != previous]
        template = rng.choice(hard or usable)
    return build_question(template, request.actions, request.profile, rng, reference)


# ---------------------------------------------------------------- solvers

STRATEGIES = ["exact", "skip-step", "rounder"]


def strategy_of(solver: str) -> str:
    return solver if solver in STRATEGIES else STRATEGIES[zlib.crc32(solver.encode()) % len(STRATEGIES)]


def solve(request: SolveRequest) -> str:
    question = request.question
    if not question.program:
        return "unknown"
    strategy = strategy_of(request.solver)
    last = len(question.program) - 1
    if strategy == "skip-step" and len(question.program) >= 3:
        return evaluate(question, skip_last=True)
    if strategy == "rounder":
        return evaluate(question, transform=lambda i, v: float(round(v)) if i < last else v)
    return evaluate(question)


# ---------------------------------------------------------------- quality judge (heuristic)

_WORD = re.compile(r"[a-z]{4,}")
_CONTENT = re.compile(r"[a-z]{5,}")


def _turns(transcript: str) -> list[tuple[str, str]]:
    turns = []
    for line in transcript.splitlines():
        speaker, _, text = line.partition(": ")
        if text and speaker in ("User", "Assistant"):
            turns.append((speaker, text))
    return turns


def judge_quality(request: QualityJudgeRequest) -> JudgeScore:
    """Coherence: replies that pick up the other speaker's words (the assistant the user's question, the
    user the assistant's last answer); fluency: well-formed messages of a sensible length; diversity:
    distinct word pairs in the dialogue. Each mapped onto 1..5."""
    turns = _turns(request.transcript)

    def link_rate(first: str, second: str, words: re.Pattern[str]) -> float:
        pairs = [(turns[i][1], turns[i + 1][1]) for i in range(len(turns) - 1)
                 if turns[i][0] == first and turns[i + 1][0] == second]
        linked = sum(1 for a, b in pairs if set(words.findall(a.lower())) & set(words.findall(b.lower())))
        return linked / len(pairs) if pairs else 0.0

    answered = link_rate("User", "Assistant", _WORD)
    # the user's follow-ups: a content word of the answer (5+ letters, so not "that" or "your")
    followed = link_rate("Assistant", "User", _CONTENT)
    has_follow_ups = any(turns[i][0] == "Assistant" and turns[i + 1][0] == "User" for i in range(len(turns) - 1))
    coherence = 1 + 4 * ((answered + followed) / 2 if has_follow_ups else answered)
    good = sum(1 for _, t in turns if 5 <= len(t.split()) <= 90 and t.rstrip()[-1:] in ".!?)")
    fluency = 1 + 4 * (good / len(turns) if turns else 0)
    words = request.transcript.lower().split()
    bigrams = list(zip(words, words[1:]))
    diversity = 1 + 4 * (len(set(bigrams)) / len(bigrams) if bigrams else 0)
    return JudgeScore(coherence=round(coherence, 2), fluency=round(fluency, 2), diversity=round(diversity, 2),
                      reasoning="offline heuristic: word overlap between turns both ways, message form, "
                                "distinct word pairs")


def check_label(question: ReasoningQuestion) -> bool:
    """The label recomputed from the facts (used by tests and as a guard)."""
    env = {f.name: f.value for f in question.facts}
    value, env = run_program(question.program, env)
    return label_of(question, value, env) == question.label
