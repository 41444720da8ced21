"""Quality metrics on small hand-made inputs with known answers, and the ablation outputs."""

from __future__ import annotations

import numpy as np
import pytest
from rich.console import Console

from knowledge.embedder import get_embedder
from metrics.ablation import ablation_table, similarity_plot
from metrics.diversity import cluster, distinct_n, near_duplicates, pairwise_similarity, topic_stats
from state.agent import QualityReport, SimilarityStats, TopicStats


def test_identical_texts_have_similarity_one_and_orthogonal_vectors_zero():
    vectors = get_embedder().encode(["I paid $18 for a day of childcare."] * 3)
    stats = pairwise_similarity(vectors)
    assert stats.pairs == 3
    assert stats.max == pytest.approx(1.0, abs=1e-4) and stats.min == pytest.approx(1.0, abs=1e-4)
    hand = np.array([[1, 0, 0], [0, 2, 0], [0, 0, 3], [1, 1, 0]], dtype=np.float32)
    stats = pairwise_similarity(hand)
    assert stats.pairs == 6
    assert stats.min == 0.0 and stats.max == pytest.approx(0.7071, abs=1e-4)
    assert stats.mean == pytest.approx(2 * 0.70710678 / 6, abs=1e-4)


def test_distinct_n_of_known_strings():
    assert distinct_n("the cat the cat", 1) == 0.5
    assert distinct_n("the cat the cat", 2) == pytest.approx(2 / 3, abs=1e-4)
    assert distinct_n(["a b c", "a b c"], 2) == 0.5
    assert distinct_n("one", 2) == 0.0


def test_clusters_and_topic_counts():
    vectors = np.array([[1, 0], [0.99, 0.14], [0, 1], [1, 0]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert cluster(vectors, 0.9) == [0, 0, 1, 0]
    assert near_duplicates(vectors, 0.95) == [(0, 1, pytest.approx(0.9902, abs=1e-3)), (0, 3, 1.0),
                                              (1, 3, pytest.approx(0.9902, abs=1e-3))]
    stats = topic_stats(["fees", "fees", "bus", "fees"], "llm")
    assert stats.unique == 2 and stats.max_repetition == 3 and stats.counts == {"fees": 3, "bus": 1}


def test_ablation_table_and_plot(tmp_path):
    def report(mean: float, values: list[float]) -> QualityReport:
        return QualityReport(dialogues=3, similarity=SimilarityStats(max=max(values), min=min(values), mean=mean,
                                                                    pairs=len(values), values=values),
                             distinct_1=0.5, distinct_2=0.7,
                             topics=TopicStats(method="clusters", unique=2, max_repetition=2, counts={"a": 2, "b": 1}))

    reports = {"direct": report(0.9, [0.9, 0.92, 0.88]), "profile": report(0.7, [0.6, 0.7, 0.8]),
               "actions": report(0.5, [0.4, 0.5, 0.6])}
    console = Console(record=True, width=140)
    console.print(ablation_table(reports))
    text = console.export_text()
    assert "direct" in text and "+ profile" in text and "+ actions" in text
    assert "0.900" in text and "0.500" in text
    path = similarity_plot(reports, tmp_path / "similarity.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
