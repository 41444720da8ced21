"""Base dialogue-quality metrics computed on a batch of dialogues: the leaves of a metric tree.

A batch is a list of dialogues, each a list of turns (speaker, text). Whole dialogues make the batch
the multi-turn metric f reads; every user → assistant exchange on its own makes the batch the
single-turn metric g reads. Every value is a plain float; the table below says which way is better
for the dialogues (a tree may use a metric either way).
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np
from pydantic import BaseModel
from sklearn.feature_extraction.text import TfidfVectorizer

from knowledge.embedder import Embedder
from metrics.diversity import distinct_n, pairwise_similarity, tokens


class Turn(BaseModel):
    speaker: str  # "user" | "assistant"
    text: str


Dialogue = list[Turn]

_CONTENT = re.compile(r"[a-z]{5,}")
_FIGURE = re.compile(r"\d")


def transcript(dialogue: Dialogue) -> str:
    return "\n".join(f"{'User' if t.speaker == 'user' else 'Assistant'}: {t.text}" for t in dialogue)


def exchanges(batch: list[Dialogue]) -> list[Dialogue]:
    """Every user turn with the assistant's reply to it, each a dialogue of its own (the single-turn view)."""
    found = []
    for dialogue in batch:
        for first, second in zip(dialogue, dialogue[1:]):
            if first.speaker == "user" and second.speaker == "assistant":
                found.append([first, second])
    return found


def _turns(batch: list[Dialogue]) -> list[Turn]:
    return [t for d in batch for t in d]


def _mean_similarity(vectors: np.ndarray) -> float:
    return float(pairwise_similarity(vectors).mean) if len(vectors) >= 2 else 0.0


def tfidf_similarity(batch: list[Dialogue], _: Embedder | None = None) -> float:
    """Mean pairwise cosine similarity of the dialogues' TF-IDF vectors (lower: more varied)."""
    texts = [transcript(d) for d in batch]
    if len(texts) < 2 or not any(tokens(t) for t in texts):
        return 0.0
    matrix = TfidfVectorizer(token_pattern=r"[a-z0-9$][a-z0-9$.,']*", lowercase=True).fit_transform(texts)
    return _mean_similarity(matrix.toarray())


def embedding_similarity(batch: list[Dialogue], embedder: Embedder | None) -> float:
    """Mean pairwise cosine similarity of the dialogues' sentence embeddings (lower: more varied)."""
    if embedder is None or len(batch) < 2:
        return 0.0
    return _mean_similarity(embedder.encode([transcript(d) for d in batch]))


def turn_length_mean(batch: list[Dialogue], _: Embedder | None = None) -> float:
    """Mean turn length, in hundreds of words."""
    lengths = [len(t.text.split()) / 100 for t in _turns(batch)]
    return float(np.mean(lengths)) if lengths else 0.0


def turn_length_var(batch: list[Dialogue], _: Embedder | None = None) -> float:
    """Variance of turn length, turn lengths in hundreds of words."""
    lengths = [len(t.text.split()) / 100 for t in _turns(batch)]
    return float(np.var(lengths)) if lengths else 0.0


def question_rate(batch: list[Dialogue], _: Embedder | None = None) -> float:
    """Share of user turns that ask something."""
    users = [t for t in _turns(batch) if t.speaker == "user"]
    return sum("?" in t.text for t in users) / len(users) if users else 0.0


def reference_back_rate(batch: list[Dialogue], _: Embedder | None = None) -> float:
    """Share of turns after the first that pick up a content word (5+ letters) of the other speaker's
    previous turn."""
    linked = total = 0
    for dialogue in batch:
        for previous, turn in zip(dialogue, dialogue[1:]):
            if previous.speaker == turn.speaker:
                continue
            total += 1
            linked += bool(set(_CONTENT.findall(previous.text.lower())) & set(_CONTENT.findall(turn.text.lower())))
    return linked / total if total else 0.0


def figure_rate(batch: list[Dialogue], _: Embedder | None = None) -> float:
    """Share of turns that give a concrete figure (any digit)."""
    turns = _turns(batch)
    return sum(bool(_FIGURE.search(t.text)) for t in turns) / len(turns) if turns else 0.0


def distinct_1(batch: list[Dialogue], _: Embedder | None = None) -> float:
    """Distinct unigrams over all unigrams, pooled over the batch (higher: more varied)."""
    return distinct_n([transcript(d) for d in batch], 1)


def distinct_2(batch: list[Dialogue], _: Embedder | None = None) -> float:
    """Distinct bigrams over all bigrams, pooled over the batch (higher: more varied)."""
    return distinct_n([transcript(d) for d in batch], 2)


Metric = Callable[[list[Dialogue], "Embedder | None"], float]

BASE_METRICS: dict[str, Metric] = {
    "distinct_1": distinct_1,
    "distinct_2": distinct_2,
    "tfidf_similarity": tfidf_similarity,
    "embedding_similarity": embedding_similarity,
    "turn_length_mean": turn_length_mean,
    "turn_length_var": turn_length_var,
    "question_rate": question_rate,
    "reference_back_rate": reference_back_rate,
    "figure_rate": figure_rate,
}


def measure(batch: list[Dialogue], names: set[str] | list[str], embedder: Embedder | None) -> dict[str, float]:
    """The named base metrics on one batch (only those a tree uses are computed)."""
    unknown = sorted(set(names) - set(BASE_METRICS))
    if unknown:
        raise KeyError(f"unknown base metric(s): {', '.join(unknown)}")
    return {name: round(float(BASE_METRICS[name](batch, embedder)), 6) for name in sorted(set(names))}
