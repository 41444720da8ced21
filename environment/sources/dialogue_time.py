"""A dialogue's own time: a seeded reference 'now', a minute on per tool call, unless the user states a date.

Every source takes its time from here, never from the wall clock, so a replay gives the same results.
"""

from __future__ import annotations

import datetime as dt
import random
import re

_DATE = re.compile(r"\b(20\d\d-[01]\d-[0-3]\d)\b")


def reference_time_for(seed: int) -> str:
    """A 'now' for one dialogue: random under its seed, between 2025-01-01 and 2026-12-31."""
    rng = random.Random(f"reference-time:{seed}")
    moment = dt.datetime(2025, 1, 1, 8, 0) + dt.timedelta(days=rng.randrange(730), minutes=rng.randrange(600))
    return moment.isoformat(timespec="minutes")


def stated_date(text: str) -> str | None:
    """A date the user wrote (YYYY-MM-DD): it wins over the dialogue's random reference time."""
    found = _DATE.findall(text)
    return found[-1] if found else None


def dialogue_clock(reference_time: str, serial: int) -> str:
    """The dialogue's time at its `serial`-th tool call: its seeded reference time, a minute later per call."""
    start = dt.datetime.fromisoformat(reference_time)
    return (start + dt.timedelta(minutes=serial)).isoformat(sep=" ", timespec="seconds")
