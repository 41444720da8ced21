"""The offline user in a persona's voice: the same requests, framed the way this person talks.

What the plan-following assistant and the checks read is never touched (the requests, a held-back value
when it is given, a request to confirm); the persona changes what is around them: greetings dropped or
made formal, a word about who they are, hurry, unease with the system, a typo put right.
"""

from __future__ import annotations

import random

from backends.offline.phrasing import FEEDBACK, OPENINGS, pick
from state.personas import Persona

_FORMAL_OPENINGS = ["Good day.", "Good morning, I hope you are well.", "Hello, thank you for your time.",
                    "Good afternoon. I would be grateful for your assistance.", "Dear assistant, good day to you."]
_CASUAL_OPENINGS = ["hey,", "hiya!", "yo, quick one.", "heyyy", "ok so,", "hi hi,"]
_CHATTY = ["It's been a long week here, so thanks for helping out.", "I've been meaning to sort this out for a while.",
           "Sorry if this is a bit of a ramble.", "My colleague usually handles this, but they're away today.",
           "The coffee machine is broken again, so bear with me.", "I promised my manager I'd have this done by lunch.",
           "Funny, I was just talking about this with a friend yesterday.", "You're a lifesaver, honestly.",
           "I always forget where these things are kept.", "It's raining buckets here, perfect day for paperwork."]
_HURRIED = ["I'm in a bit of a rush.", "Quick answers are fine.", "I only have a minute, sorry.",
            "Please keep it short, I'm between meetings.", "Fast as you can, please.", "No need for detail, I'm late.",
            "Short version is fine.", "I have to run soon."]
_NOVICE = ["I'm new to this system, so bear with me.", "I'm not sure I'm using the right terms here.",
           "First time doing this myself, sorry if it's a silly question.", "I don't really know how this works yet."]
_EXPERT = ["I know the records well, so no need to explain.", "Just the facts is fine.",
           "I've done this a hundred times, just need the data.", "Skip the explanations, I know the system."]
_SLIPS = [("teh", "the"), ("recrod", "record"), ("plase", "please"), ("chekc", "check"), ("detials", "details"),
          ("chnage", "change"), ("thnaks", "thanks"), ("aslo", "also")]
_SLIP_FRAMES = ["Sorry, {wrong}, I mean {right}: my typing is all over the place today.",
                "*{right}, not {wrong}. Oops.", "(that was meant to say {right}, not {wrong})",
                "Ugh, {wrong} = {right}. Fat fingers."]


def _strip(text: str, prefixes: list[str]) -> str:
    for prefix in prefixes:
        if text.startswith(prefix + " "):
            return text[len(prefix) + 1:]
    return text


def styled(message: str, persona: Persona, rng: random.Random, first: bool, closing: bool) -> str:
    """The message as this persona says it; the requests inside stay word for word."""
    text = message
    if persona.verbosity == "terse" or persona.phrasing != "neutral":
        text = _strip(_strip(text, OPENINGS), FEEDBACK)
    if first and persona.phrasing == "formal":
        text = f"{pick(rng, _FORMAL_OPENINGS)} {text}"
    elif first and persona.phrasing == "casual":
        text = f"{pick(rng, _CASUAL_OPENINGS)} {text}"
    extra: list[str] = []
    if first and persona.verbosity == "chatty":
        extra.append(f"I'm {persona.name.split()[0]}, {persona.role}" + (f", and I want to {persona.intent}."
                                                                            if persona.intent else "."))
    if first and persona.expertise != "regular":
        extra.append(pick(rng, _NOVICE if persona.expertise == "novice" else _EXPERT))
    if persona.verbosity == "chatty" and not closing and rng.random() < 0.5:
        extra.append(pick(rng, _CHATTY))
    if persona.patience == "hurried" and not closing and rng.random() < 0.6:
        extra.append(pick(rng, _HURRIED))
    if persona.corrects_mistakes and not closing and rng.random() < 0.4:
        wrong, right = _SLIPS[rng.randrange(len(_SLIPS))]
        extra.append(pick(rng, _SLIP_FRAMES).format(wrong=wrong, right=right))
    if persona.phrasing == "formal" and closing:
        text = f"{text} Kind regards."
    return " ".join([text, *extra]) if extra else text
