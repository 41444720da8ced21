"""Train/test assignment by a stable hash of the dialogue id."""

from __future__ import annotations

import hashlib
from typing import Literal

Split = Literal["train", "test"]


def split_of(dialogue_id: str, test_fraction: float) -> Split:
    """The same id always lands in the same split, whatever else is exported with it.

    The id is hashed (SHA-256, not Python's salted `hash`) to a number in [0, 1); below the fraction is test.
    Raising the fraction only moves dialogues from train to test, never back.
    """
    position = int.from_bytes(hashlib.sha256(dialogue_id.encode("utf-8")).digest()[:8], "big") / 2**64
    return "test" if position < test_fraction else "train"
