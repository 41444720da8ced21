"""The offline user agent's turns and the offline assistant's answers, following the prompt parameters.

Each fragment of θ (user) or φ (assistant) is followed on a turn with probability σ(weight), drawn
from the turn's rng key, so a batch of dialogues moves smoothly with the weights; the temperature
decides how far down a list of phrasings the wording is drawn (0: always the stock phrase).
"""

from __future__ import annotations

import math
import random
import re

from langchain_core.messages import AIMessage, HumanMessage

from backends.protocols import AgentTurnRequest, KnowledgeAnswerRequest
from state.agent import Action, KnowledgeChunk, Profile
from state.dialogue import UserTurn
from state.prompt_params import PromptStyle

OPENINGS = ["Hi!", "Hello there.", "Good morning.", "Hi, quick question.", "Hey, thanks for taking this.",
            "Hello, I hope you can help.", "Hi, I've been going over my spending."]
CONNECTORS = ["Also,", "Next,", "Another thing:", "On top of that,", "Separately,", "One more item:"]
FOLLOW_UPS = ["Does that sound right to you?", "Is there a cheaper way to do that?", "Did I pay more than I needed to?",
              "What would you change here?", "Would a different plan have saved me money?",
              "How does that fit my budget?", "Was that a sensible choice?"]
ACKNOWLEDGEMENTS = ["Thanks, that helps.", "That makes sense.", "Good to know.", "Understood, thank you.",
                    "Okay, that clears it up."]
CLOSINGS = ["Thanks, that helps a lot. I'll plan around it.", "Great, that answers it. Thank you!",
            "Perfect, I know what to do now. Thanks!", "That's all I needed, thank you.",
            "Brilliant, I can sort my budget out now. Thanks!"]
LEADS = ["Here is what the published terms say.", "Let me check the price lists.",
         "Good question; the documents cover this.", "The price lists answer this.",
         "I looked this up in the published rates.", "Here's how the published figures apply."]
STOCK = 3  # without `vary_wording`, only the first few (stock) phrasings of each list are used

_AMOUNT = re.compile(r"\$(\d[\d,]*(?:\.\d{2})?)")
_WORD = re.compile(r"[a-z]{5,}")


def follows(style: PromptStyle, name: str, rng: random.Random) -> bool:
    return rng.random() < style.probability(name)


def pick(options: list[str], style: PromptStyle, rng: random.Random, varied: bool, used: str = "") -> str:
    """A phrasing: the stock ones unless `varied`, drawn with weights exp(-rank / temperature); a varied
    draw avoids phrasings already in `used` (the dialogue so far)."""
    pool = options if varied else options[:STOCK]
    if varied:
        pool = [o for o in pool if o not in used] or pool
    if style.temperature <= 0.05:
        return pool[0]
    weights = [math.exp(-i / style.temperature) for i in range(len(pool))]
    return rng.choices(pool, weights=weights)[0]


def amounts(text: str) -> list[float]:
    return [float(a.replace(",", "")) for a in _AMOUNT.findall(text)]


def _recount(actions: list[Action], everything: list[Action], profile: Profile, figures: bool) -> str:
    """The actions in the first person, exact (questions are computed from these numbers); with
    `concrete_figures` followed, also the running total spent so far."""
    text = " ".join(a.description.replace(f", {profile.name} ", ", I ", 1) for a in actions)
    if figures and actions:
        upto = everything.index(actions[-1]) + 1
        spent = sum(f.value for a in everything[:upto] for f in a.facts if f.name.endswith("_cost"))
        text += f" That makes ${spent:,.2f} spent so far."
    return text


def _title(chunk_line: str) -> str:
    return chunk_line.lstrip("# ").split(":")[0].strip()


def user_turn(request: AgentTurnRequest, profile: Profile, said: list[str], profile_facts: str) -> UserTurn:
    """A user-agent turn that recounts the actions (mode "actions"), shaped by θ."""
    rng = random.Random(request.rng_key)
    style = request.style
    everything = "\n".join(m.text for m in request.messages)
    varied = follows(style, "vary_wording", rng)
    size = 1 if follows(style, "one_concern", rng) else 2
    figures = follows(style, "concrete_figures", rng)
    told = sum(1 for a in request.actions if any(a.date in text for text in said))
    pending = request.actions[told:]
    if not said:
        recount = _recount(pending[:size], request.actions, profile, figures)
        return UserTurn(user_message=f"{pick(OPENINGS, style, rng, varied)} I'm {profile.name}, a {profile.role}, and "
                                     f"I want to {profile.intent}; {profile_facts}. {recount} "
                                     f"{pick(FOLLOW_UPS, style, rng, varied)}")
    replies = [m.text for m in request.messages if isinstance(m, AIMessage) and m.text.strip()]
    parts = []
    if replies and follows(style, "acknowledge", rng):
        titles = re.findall(r"According to ([^:]+):", replies[-1])
        thanks = pick(ACKNOWLEDGEMENTS, style, rng, varied, everything)
        parts.append(f"{thanks} Noted on the {titles[0]}." if titles else thanks)
    if replies and follows(style, "refer_back", rng):
        quoted = amounts(replies[-1]) or [a for r in replies for a in amounts(r)]
        if quoted:
            parts.append(f"You mentioned ${quoted[0]:,.2f} earlier, so I'm keeping that in mind.")
    if not pending:
        return UserTurn(user_message=" ".join([*parts, pick(CLOSINGS, style, rng, varied, everything)]),
                        is_task_complete=True)
    batch = pending[:1] if request.last_turn else pending[:size]
    recount = _recount(batch, request.actions, profile, figures)
    if request.last_turn:
        return UserTurn(user_message=" ".join([*parts, f"One last thing: {recount} That's everything for now, "
                                                       f"thanks!"]), is_task_complete=True)
    connector = pick(CONNECTORS, style, rng, varied, everything)
    parts.append(f"{connector} {recount[0].lower()}{recount[1:]} {pick(FOLLOW_UPS, style, rng, varied, everything)}")
    return UserTurn(user_message=" ".join(parts))


def statements(text: str) -> list[str]:
    """A chunk's body as whole statements: each list item, and each sentence of a wrapped paragraph."""
    body = "\n".join(text.splitlines()[1:])
    units: list[str] = []
    for para in re.split(r"\n\s*\n", body):
        lines = [line.strip() for line in para.splitlines() if line.strip()]
        if lines and all(line.startswith(("-", "*")) for line in lines):
            units.extend(line.strip("-* ").rstrip(".") + "." for line in lines)
        elif lines:
            units.extend(s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(lines)) if s.strip())
    return units


def _relevant(chunk: KnowledgeChunk, words: set[str], limit: int) -> list[str]:
    units = statements(chunk.text)
    return sorted(units, key=lambda u: -len(words & set(re.findall(r"[a-z]{4,}", u.lower()))))[:limit]


def answer(request: KnowledgeAnswerRequest) -> AIMessage:
    """An answer quoting the retrieved knowledge, shaped by φ."""
    rng = random.Random(request.rng_key)
    if request.closing:
        return AIMessage(content=rng.choice(["You're welcome, good luck with it!", "Glad I could help. Take care!",
                                             "Happy to help; come back any time."]))
    style = request.style
    humans = [m.text for m in request.messages if isinstance(m, HumanMessage)]
    last = humans[-1] if humans else ""
    if not request.knowledge:
        return AIMessage(content="I could not find anything on that in the published price lists.")
    earlier = "\n".join(m.text for m in request.messages[:-1])
    varied = follows(style, "vary_wording", rng)
    concise = follows(style, "concise", rng)
    parts = []
    if follows(style, "acknowledge", rng):
        question = next((s for s in reversed(re.split(r"(?<=[.!?])\s+", last)) if s.endswith("?")), "")
        words = [w for w in _WORD.findall(last.lower())][:4]
        if question:
            parts.append(f"You asked: \"{question}\"")
        elif words:
            parts.append(f"You told me about {', '.join(words)}.")
    parts.append(pick(LEADS, style, rng, varied, earlier))
    words = set(re.findall(r"[a-z]{4,}", last.lower()))
    for chunk in request.knowledge[:1 if concise else 2]:
        title = _title(chunk.text.splitlines()[0])
        parts.append(f"According to {title}: " + " ".join(_relevant(chunk, words, 1 if concise else 2)))
    mentioned = amounts(last)
    if mentioned and follows(style, "concrete_figures", rng):
        total = sum(mentioned[-2:]) if len(mentioned) >= 2 else mentioned[-1]
        parts.append(f"Working your numbers: the amounts you gave come to ${total:,.2f}.")
    elif mentioned and not concise:
        parts.append(f"I noted the amounts you mentioned ({', '.join(f'${a:,.2f}' for a in mentioned[:3])}).")
    before = [a for text in humans[:-1] for a in amounts(text)]
    if before and follows(style, "refer_back", rng):
        parts.append(f"Earlier you mentioned ${before[-1]:,.2f}; keep that in the same month's total.")
    return AIMessage(content=" ".join(parts))
