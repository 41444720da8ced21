"""Near-duplicate dialogues by embedding: the user's messages and the sequence of tools called."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel
from rich.console import Console
from rich.progress import Progress

from knowledge.embedder import Embedder
from knowledge.retriever import VectorIndex
from results.exporters.source import SourceDialogue

BATCH = 32
ROUNDING = 1e-6  # float32 inner products of identical unit vectors can fall just short of 1


class DroppedCopy(BaseModel):
    id: str
    copy_of: str
    similarity: float


def dedup_text(messages: list[dict[str, Any]]) -> str:
    """What makes two dialogues the same for training: what the user asked and which tools answered."""
    asked = [str(m.get("content") or "") for m in messages if m.get("role") == "user"]
    tools = [c.get("function", {}).get("name", "") for m in messages if m.get("role") == "assistant"
             for c in m.get("tool_calls") or []]
    return "\n".join(asked) + "\ntools: " + " ".join(tools)


def embed_dialogues(dialogues: list[SourceDialogue], embedder: Embedder, console: Console | None = None) -> np.ndarray:
    """Unit vectors, one row per dialogue, in order."""
    texts = [dedup_text(d.messages) for d in dialogues]
    rows: list[np.ndarray] = []
    with Progress(console=console or Console(stderr=True), transient=True) as progress:
        task = progress.add_task("embedding dialogues", total=len(texts))
        for start in range(0, len(texts), BATCH):
            rows.append(embedder.encode(texts[start:start + BATCH]))
            progress.advance(task, len(texts[start:start + BATCH]))
    return np.concatenate(rows) if rows else np.zeros((0, embedder.dim), dtype=np.float32)


def drop_near_copies(dialogues: list[SourceDialogue], vectors: np.ndarray,
                     threshold: float) -> tuple[list[SourceDialogue], list[DroppedCopy]]:
    """Walk the dialogues in order; drop one whose similarity to an already kept one is at or above the threshold.

    The first of a group of copies is the one kept, so the originals survive and the result depends only on order.
    """
    index = VectorIndex(vectors.shape[1] if vectors.ndim == 2 else 1)
    kept: list[SourceDialogue] = []
    dropped: list[DroppedCopy] = []
    for dialogue, vector in zip(dialogues, vectors):
        scores, ids = index.search(vector[None, :], 1)
        if ids[0][0] >= 0 and float(scores[0][0]) >= threshold - ROUNDING:
            dropped.append(DroppedCopy(id=dialogue.id, copy_of=kept[int(ids[0][0])].id,
                                       similarity=round(float(scores[0][0]), 4)))
            continue
        index.add(vector[None, :])
        kept.append(dialogue)
    return kept, dropped


def nearest_similarity(vectors: np.ndarray) -> list[float]:
    """For each row, the cosine similarity to its most similar other row (empty below two rows)."""
    if len(vectors) < 2:
        return []
    index = VectorIndex(vectors.shape[1])
    index.add(vectors)
    scores, ids = index.search(vectors, 2)
    own = np.arange(len(vectors))
    # The row itself usually comes first; with exact copies it may come second, so take the other one.
    best = np.where(ids[:, 0] == own, scores[:, 1], scores[:, 0])
    return [round(float(s), 4) for s in np.clip(best, -1.0, 1.0)]
