"""How varied a finished run's users are: the diversity metrics of metrics/ over the user turns of its valid
dialogues (`stats RUN... --diversity`, side by side), e.g. a run with personas beside one without."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from pydantic import BaseModel, Field
from rich.table import Table

from environment.errors import InputError
from knowledge.embedder import Embedder, get_embedder
from metrics.diversity import cluster, distinct_n, pairwise_similarity
from runner import layout
from runner.layout import RunFiles


class UserDiversity(BaseModel):
    dialogues: int
    user_turns: int
    personas: int = Field(description="Distinct personas the users played (0: none).")
    similarity_mean: float = Field(description="Mean pairwise cosine similarity of user turns (lower: more varied).")
    similarity_max: float
    distinct_1: float
    distinct_2: float
    topics: int = Field(description="Clusters of dialogues by their users' words (embedding similarity >= 0.8).")
    topic_max_repetition: int


def user_turns(run_dir: Path) -> tuple[list[list[str]], int]:
    """Each valid dialogue's user messages, and how many distinct personas played them."""
    files = RunFiles(run_dir)
    if not files.file(layout.DIALOGUES).exists():
        raise InputError(f"no {layout.DIALOGUES} in {run_dir} (is it a run folder?)")
    turns, personas = [], set()
    for line in files.iter_lines(layout.DIALOGUES):
        turns.append([m["content"] for m in line["messages"] if m.get("role") == "user" and m.get("content")])
        personas |= {(t.get("persona") or {}).get("persona_id") for t in line.get("metadata", {}).get("tasks", [])}
    return turns, len(personas - {None})


def user_diversity(run_dir: Path, embedder: Embedder) -> UserDiversity:
    dialogues, personas = user_turns(run_dir)
    flat = [t for d in dialogues for t in d]
    similarity = pairwise_similarity(embedder.encode(flat)) if len(flat) > 1 else None
    joined = [" ".join(d) for d in dialogues if d]
    labels = cluster(embedder.encode(joined)) if joined else []
    return UserDiversity(dialogues=len(dialogues), user_turns=len(flat), personas=personas,
                         similarity_mean=similarity.mean if similarity else 0.0,
                         similarity_max=similarity.max if similarity else 0.0,
                         distinct_1=distinct_n(flat, 1), distinct_2=distinct_n(flat, 2), topics=len(set(labels)),
                         topic_max_repetition=max((labels.count(x) for x in set(labels)), default=0))


def read_diversity(run_dirs: dict[str, Path], model: str = "") -> dict[str, UserDiversity]:
    embedder = get_embedder(model)
    return {label: user_diversity(path, embedder) for label, path in run_dirs.items()}


ROWS: list[tuple[str, Callable[[UserDiversity], str]]] = [
    ("Dialogues / user turns", lambda d: f"{d.dialogues} / {d.user_turns}"),
    ("Personas played", lambda d: str(d.personas)),
    ("User-turn similarity, mean (lower: more varied)", lambda d: f"{d.similarity_mean:.4f}"),
    ("User-turn similarity, max", lambda d: f"{d.similarity_max:.4f}"),
    ("Distinct-1 / distinct-2", lambda d: f"{d.distinct_1:.4f} / {d.distinct_2:.4f}"),
    ("Topics (max repetition)", lambda d: f"{d.topics} ({d.topic_max_repetition})"),
]


def diversity_table(columns: dict[str, UserDiversity]) -> Table:
    table = Table(title="User diversity")
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    for label, render in ROWS:
        table.add_row(label, *(render(d) for d in columns.values()))
    return table
