"""Library-computed diversity metrics over dialogue texts or their embeddings."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from knowledge.retriever import VectorIndex
from state.agent import SimilarityStats, TopicStats

_TOKEN = re.compile(r"[a-z0-9$][a-z0-9$.,']*")


def tokens(text: str) -> list[str]:
    return [t.rstrip(".,'") for t in _TOKEN.findall(text.lower()) if t.rstrip(".,'")]


def distinct_n(texts: list[str] | str, n: int) -> float:
    """Distinct n-grams over all n-grams, counted within each text and pooled (0 when there are none)."""
    if isinstance(texts, str):
        texts = [texts]
    grams: list[tuple[str, ...]] = []
    for text in texts:
        words = tokens(text)
        grams.extend(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return round(len(set(grams)) / len(grams), 4) if grams else 0.0


def pairwise_similarity(vectors: np.ndarray) -> SimilarityStats:
    """Cosine similarity of every pair of rows (rows are normalized here, so any vectors will do)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(vectors) < 2:
        return SimilarityStats(max=0.0, min=0.0, mean=0.0, pairs=0, values=[])
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms == 0, 1, norms)
    matrix = np.clip(unit @ unit.T, -1.0, 1.0)
    upper = matrix[np.triu_indices(len(unit), k=1)]
    values = [round(float(v), 4) for v in upper]
    return SimilarityStats(max=round(float(upper.max()), 4), min=round(float(upper.min()), 4),
                           mean=round(float(upper.mean()), 4), pairs=len(values), values=values)


def near_duplicates(vectors: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """Pairs (i < j) whose cosine similarity is above the threshold."""
    stats = np.asarray(vectors, dtype=np.float32)
    found = []
    for i in range(len(stats)):
        for j in range(i + 1, len(stats)):
            sim = float(stats[i] @ stats[j])
            if sim > threshold:
                found.append((i, j, round(sim, 4)))
    return found


def cluster(vectors: np.ndarray, threshold: float = 0.8) -> list[int]:
    """Greedy leader clustering: each vector joins the most similar earlier leader above the threshold,
    else it leads a new cluster. Deterministic for a given order."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if not len(vectors):
        return []
    index = VectorIndex(vectors.shape[1])
    leaders: list[int] = []
    labels: list[int] = []
    for i, vector in enumerate(vectors):
        if len(index):
            scores, ids = index.search(vector[None, :], 1)
            if ids[0][0] >= 0 and scores[0][0] >= threshold:
                labels.append(labels[leaders[int(ids[0][0])]])
                continue
        index.add(vector[None, :])
        leaders.append(i)
        labels.append(len(leaders) - 1)
    return labels


STOP = set("the and for that this with you your have what from are was were will would about there their they them "
           "into than then just also been can could does did should much more most some very when which while "
           "here thanks thank hello good great need want like know right help each only over these those other "
           "month total paid pay per according dollars".split())


def cluster_names(texts: list[str], labels: list[int]) -> list[str]:
    """A name per text: its cluster's two most frequent content words."""
    words: dict[int, Counter] = {}
    for text, label in zip(texts, labels):
        words.setdefault(label, Counter()).update(w for w in tokens(text) if len(w) > 3 and w.isalpha()
                                                  and w not in STOP)
    names = {label: " ".join(w for w, _ in counts.most_common(2)) or f"topic {label}"
             for label, counts in words.items()}
    return [f"{names[label]} (#{label})" for label in labels]


def topic_stats(topics: list[str], method: str) -> TopicStats:
    counts = Counter(topics)
    return TopicStats(method=method, unique=len(counts), max_repetition=max(counts.values(), default=0),  # type: ignore[arg-type]
                      counts=dict(counts.most_common()))
