"""The offline user agent: templated profiles, actions priced from the retrieved knowledge, memory that
grows with every action, user turns that recount the actions, and an assistant quoting the knowledge.

Deterministic under the request's rng key; no network, no model.
"""

from __future__ import annotations

import random
import re
from datetime import date, timedelta

from langchain_core.messages import AIMessage, HumanMessage

from backends.protocols import (ActRequest, AgentTurnRequest, KnowledgeAnswerRequest, NothingToManage, ProfileRequest,
                                QualityJudgeRequest, ReasoningQuestionRequest, ReflectRequest, SolveRequest,
                                TopicRequest)
from backends.offline import questions, styled
from backends.offline.styled import statements
from state.agent import Action, Fact, JudgeScore, KnowledgeChunk, Memory, Profile, ReasoningQuestion
from state.dialogue import Usage, UserTurn

NAMES = ["Amara Okafor", "Ben Whitfield", "Carmen Ruiz", "Dmitri Volkov", "Elena Park", "Farid Haddad",
         "Grace Liu", "Hugo Martin", "Ines Duarte", "Jamal Reed", "Keiko Tanaka", "Liam Byrne", "Maya Singh",
         "Noah Fischer", "Olga Petrova", "Priya Nair", "Rafael Costa", "Sofia Rossi", "Tomas Novak", "Yara Haddad"]

# role, household size range, monthly budget range (dollars) for what this user is planning
ROLES = [
    ("single parent of two primary-school children", (3, 3), (500, 800)),
    ("retired schoolteacher living alone on a pension", (1, 1), (300, 500)),
    ("graduate student sharing a flat with two friends", (3, 3), (250, 400)),
    ("night-shift nurse with a partner and a toddler", (3, 3), (600, 900)),
    ("freelance graphic designer with an irregular income", (1, 2), (350, 600)),
    ("father of four who commutes into the city", (6, 6), (900, 1300)),
    ("young couple saving for their first home", (2, 2), (700, 1000)),
    ("warehouse worker supporting an elderly parent", (2, 2), (450, 700)),
    ("small bakery owner who mixes personal and shop spending", (2, 4), (800, 1200)),
    ("recent immigrant setting up a first household", (2, 4), (400, 650)),
]

# intent, problems (also the agent's successive focuses)
INTENTS = [
    ("cut the monthly grocery bill", ["compare co-op delivery with shopping in person",
                                      "plan staple purchases like rice, eggs and milk for the month"]),
    ("stop losing money to bank fees", ["find out when the monthly account fee is waived",
                                        "avoid overdraft and ATM charges before payday"]),
    ("plan the cost of after-school childcare", ["work out the daily versus weekly childcare price",
                                                 "avoid late pickup charges"]),
    ("lower the electricity and water bills", ["understand the day and night electricity rates",
                                               "estimate the two-monthly water bill"]),
    ("decide between a monthly transit pass and single fares", ["count how many rides a month are really taken",
                                                                "check the reduced fare pass and bike locker"]),
    ("build an emergency fund while paying down a credit card", ["compare savings interest with card interest",
                                                                 "set a safe monthly savings transfer"]),
    ("keep the whole household within one monthly budget", ["track groceries, transit and utilities together",
                                                            "see which bills arrive on which dates"]),
    ("get ready for a new school term without overspending", ["price the after-school registration and care",
                                                              "budget the commute for an older child"]),
]

TRAITS = ["careful with details", "anxious about money", "chatty", "brief and to the point", "skeptical",
          "optimistic", "methodical", "a little forgetful", "direct", "very polite", "likes round numbers",
          "asks many follow-up questions"]

# "- Label: $3.60 per dozen" lines in the knowledge
PRICE_LINE = re.compile(r"^\s*[-*]\s*(?P<label>[^:\n]+):\s*\$(?P<price>\d[\d,]*(?:\.\d+)?)\s+per\s+(?P<unit>[A-Za-z ]+?)"
                        r"\s*[.;]?\s*$", re.M)
QUANTITIES = {"kwh": (120, 480, 10), "cubic metre": (4, 14, 1), "day": (3, 12, 1), "week": (1, 4, 1),
              "month": (1, 3, 1), "kg": (1, 4, 1), "ride": (4, 22, 1), "dozen": (1, 4, 1)}
GOODS = {"dozen", "jug", "bag", "kg"}
SERVICES = {"day", "week", "month"}
INVARIANT_UNITS = {"kwh", "dozen", "kg"}


def _rng(key: str) -> random.Random:
    return random.Random(key)


# ---------------------------------------------------------------- profiles

def generate_profiles(request: ProfileRequest) -> list[Profile]:
    """`count` profiles, avoiding the (role, intent) pairs and names already in the pool."""
    rng = _rng(request.rng_key)
    taken_pairs = {(p.role, p.intent) for p in request.avoid}
    taken_names = {p.name for p in request.avoid}
    pairs = [(r, i) for r in range(len(ROLES)) for i in range(len(INTENTS))]
    rng.shuffle(pairs)
    pairs.sort(key=lambda pair: (ROLES[pair[0]][0], INTENTS[pair[1]][0]) in taken_pairs)  # unused pairs first
    names = [n for n in NAMES if n not in taken_names] or list(NAMES)
    rng.shuffle(names)
    profiles = []
    for k in range(request.count):
        r, i = pairs[k % len(pairs)]
        role, household, budget = ROLES[r]
        intent, problems = INTENTS[i]
        people = rng.randint(*household)
        amount = rng.randrange(budget[0], budget[1] + 1, 10)
        profiles.append(Profile(
            name=names[k % len(names)], role=role, intent=intent, problems=list(problems),
            traits=rng.sample(TRAITS, 2),
            facts=[Fact(name="budget", value=amount, unit="$", label="monthly budget for these costs"),
                   Fact(name="household", value=people, unit="people", label="people in the household")],
        ))
    return profiles


# ---------------------------------------------------------------- actions and memory

def _unit_key(unit: str) -> str:
    unit = unit.strip().lower()
    return unit[:-1] if unit.endswith("s") and unit[:-1] in QUANTITIES else unit


def _plural(unit: str, qty: float) -> str:
    if qty == 1 or _unit_key(unit) in INVARIANT_UNITS:
        return unit
    return unit + "s"


def priced_lines(chunks: list[KnowledgeChunk]) -> list[tuple[str, float, str, str]]:
    """(label, unit price, unit, chunk id) for every price line in the retrieved knowledge, best chunk first."""
    found = []
    for chunk in chunks:
        for m in PRICE_LINE.finditer(chunk.text):
            label = m.group("label").split(",")[0].strip()
            found.append((label[0].lower() + label[1:], float(m.group("price").replace(",", "")),
                          m.group("unit").strip(), chunk.chunk_id))
    return found


def _start_date(seed_key: str) -> date:
    return date(2025, 3, 3) + timedelta(days=_rng(seed_key + ":start").randint(0, 20))


def act(request: ActRequest) -> Action:
    rng = _rng(request.rng_key)
    profile = request.profile
    step = request.step
    previous = request.actions[-1] if request.actions else None
    day = (date.fromisoformat(previous.date) + timedelta(days=rng.randint(2, 9)) if previous
           else _start_date(request.rng_key))
    used = {f.label for a in request.actions for f in a.facts if f.name.endswith("_cost")}
    options = [p for p in priced_lines(request.knowledge) if p[0] not in used]
    if options:  # a price from the most relevant chunk that has one
        best = [p for p in options if p[3] == options[0][3]]
        label, price, unit, source = rng.choice(best)
        key = _unit_key(unit)
        low, high, stride = QUANTITIES.get(key, (1, 5, 1))
        qty = rng.randrange(low, high + 1, stride)
        verbs = (["bought", "picked up"] if key in GOODS else ["signed up for", "paid for"] if key in SERVICES
                 else ["paid for", "was charged for"])
        verb = rng.choice(verbs)
        sources = [source]
    else:  # nothing priced in view: a plain transfer towards the goal
        label, price, unit, qty, verb, sources = "a savings transfer", float(rng.randrange(20, 160, 5)), "transfer", 1, \
            "made", []
    cost = round(qty * price, 2)
    n = step + 1
    description = (f"On {day.isoformat()}, {profile.name} {verb} {label} for {qty} {_plural(unit, qty)} at "
                   f"${price:.2f} per {unit}: ${cost:,.2f} in total.")
    problems = profile.problems
    stop = request.must_stop or (request.may_stop and rng.random() < 0.4)
    return Action(
        step=step, date=day.isoformat(), focus=request.focus, description=description, sources=sources,
        facts=[Fact(name=f"a{n}_qty", value=qty, unit=_plural(unit, qty), label=label),
               Fact(name=f"a{n}_price", value=price, unit="$", label=f"{label} per {unit}"),
               Fact(name=f"a{n}_cost", value=cost, unit="$", label=label)],
        next_focus=problems[(step + 1) % len(problems)], stop=stop,
    )


def _first_sentence(text: str) -> str:
    units = statements(text)
    return units[0] if units else text.splitlines()[0].lstrip("# ")


def reflect(request: ReflectRequest) -> Memory:
    memory = request.memory
    action = request.action
    cost = next((f for f in action.facts if f.name.endswith("_cost")), None)
    note = f"{action.date}: {action.description.split(': ', 1)[0].split(', ', 1)[-1]}"
    if cost is not None:
        spent = sum(f.value for f in [*memory.facts, cost] if f.name.endswith("_cost"))
        note += f" (${cost.value:,.2f}; ${spent:,.2f} spent so far)"
    learned = [f"learned from {c.source}: {_first_sentence(c.text)}" for c in request.knowledge[:1]]
    return Memory(notes=[*memory.notes, note, *learned], facts=[*memory.facts, *action.facts])


# ---------------------------------------------------------------- the dialogue

OPENINGS = ["Hi!", "Hello there.", "Good morning.", "Hi, quick question.", "Hey, thanks for taking this."]
DIRECT_OPENINGS = ["Hi, can you help me with my household budget?", "Hello, I need some help with money at home.",
                   "Hi, I want to spend less every month."]
DIRECT_ASKS = ["What costs should I watch most closely?", "Where do most families overspend?",
               "What is the cheapest way to handle the bills?"]
FOLLOW_UPS = ["Does that sound right to you?", "Is there a cheaper way to do that?", "Did I pay more than I needed to?",
              "What would you change here?"]
CLOSINGS = ["Thanks, that helps a lot. I'll plan around it.", "Great, that answers it. Thank you!",
            "Perfect, I know what to do now. Thanks!"]


def _said(request: AgentTurnRequest) -> list[str]:
    return [m.text for m in request.messages if isinstance(m, HumanMessage)]


def _profile_facts(profile: Profile) -> str:
    facts = {f.name: f for f in profile.facts}
    parts = []
    if "budget" in facts:
        parts.append(f"my monthly budget for these costs is {facts['budget'].show()}")
    if "household" in facts:
        people = int(facts["household"].value)
        parts.append("I live on my own" if people == 1 else f"there are {people} people in our household")
    return " and ".join(parts)


def user_turn(request: AgentTurnRequest) -> UserTurn:
    rng = _rng(request.rng_key)
    said = _said(request)
    profile = request.profile
    if request.mode == "direct" or profile is None:
        if not said:
            return UserTurn(user_message=f"{rng.choice(DIRECT_OPENINGS)} {rng.choice(DIRECT_ASKS)}")
        if len(said) < 2 and not request.last_turn:
            return UserTurn(user_message=rng.choice(FOLLOW_UPS))
        return UserTurn(user_message=rng.choice(CLOSINGS), is_task_complete=True)

    if request.mode == "profile":
        if not said:
            return UserTurn(user_message=f"{rng.choice(OPENINGS)} I'm {profile.name}, a {profile.role}. I want to "
                                         f"{profile.intent}; {_profile_facts(profile)}. First I need to "
                                         f"{profile.problems[0]}.")
        if len(said) < len(profile.problems) and not request.last_turn:
            return UserTurn(user_message=f"Thanks. Next, I'd like to {profile.problems[len(said)]}. "
                                         f"{rng.choice(FOLLOW_UPS)}")
        return UserTurn(user_message=rng.choice(CLOSINGS), is_task_complete=True)

    # mode "actions": recount the actions, as θ shapes the turn
    return styled.user_turn(request, profile, said, _profile_facts(profile))


class OfflineAgentBackend(NothingToManage):
    """Method B without a model: every role deterministic under its rng key. Topics are left to clusters."""

    name = "offline"

    async def generate_profiles(self, request: ProfileRequest) -> tuple[list[Profile], Usage]:
        return generate_profiles(request), Usage()

    async def act(self, request: ActRequest) -> tuple[Action, Usage]:
        return act(request), Usage()

    async def reflect(self, request: ReflectRequest) -> tuple[Memory, Usage]:
        return reflect(request), Usage()

    async def user_turn(self, request: AgentTurnRequest) -> tuple[UserTurn, Usage]:
        return user_turn(request), Usage()

    async def answer(self, request: KnowledgeAnswerRequest) -> tuple[AIMessage, Usage]:
        return styled.answer(request), Usage()

    async def make_question(self, request: ReasoningQuestionRequest) -> tuple[ReasoningQuestion, Usage]:
        return questions.make_question(request), Usage()

    async def solve(self, request: SolveRequest) -> tuple[str, Usage]:
        return questions.solve(request), Usage()

    async def judge_quality(self, request: QualityJudgeRequest) -> tuple[JudgeScore, Usage]:
        return questions.judge_quality(request), Usage()

    async def topic(self, request: TopicRequest) -> tuple[str | None, Usage]:
        return None, Usage()
