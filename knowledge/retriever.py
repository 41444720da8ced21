"""Retrieval behind a small interface: faiss inner product over unit vectors, or any registered retriever."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Protocol, runtime_checkable

import faiss
import numpy as np

from knowledge.corpus import load_corpus
from knowledge.embedder import Embedder, get_embedder
from state.agent import KnowledgeChunk


@runtime_checkable
class Retriever(Protocol):
    def search(self, query: str, k: int = 3) -> list[KnowledgeChunk]: ...


class VectorIndex:
    """Exact nearest neighbours by cosine similarity (inner product of unit vectors)."""

    def __init__(self, dim: int) -> None:
        self.index = faiss.IndexFlatIP(dim)

    def add(self, vectors: np.ndarray) -> None:
        if len(vectors):
            self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and row ids (-1 where there are fewer than k rows), one row per query."""
        k = max(1, min(k, len(self))) if len(self) else 1
        if not len(self):
            n = len(vectors)
            return np.full((n, 1), -1.0, dtype=np.float32), np.full((n, 1), -1, dtype=np.int64)
        return self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)


RECENT_QUERIES = 4096


class FaissRetriever:
    """Chunks embedded once; a query returns the k most similar, best first."""

    def __init__(self, chunks: list[KnowledgeChunk], embedder: Embedder) -> None:
        self.chunks = chunks
        self.embedder = embedder
        self.index = VectorIndex(embedder.dim)
        self.index.add(embedder.encode([c.text for c in chunks]))
        self._recent: OrderedDict[tuple[str, int], list[KnowledgeChunk]] = OrderedDict()
        self._lock = threading.Lock()

    def search(self, query: str, k: int = 3) -> list[KnowledgeChunk]:
        key = (query, k)
        with self._lock:
            found = self._recent.get(key)
            if found is not None:
                self._recent.move_to_end(key)
                return list(found)
        scores, ids = self.index.search(self.embedder.encode([query]), k)
        found = [self.chunks[i].model_copy(update={"score": round(float(s), 4)})
                 for s, i in zip(scores[0], ids[0]) if i >= 0]
        with self._lock:
            # tuning prompts asks the same questions of the corpus over and over (the three batches of a
            # zeroth-order step share most of their turns): answer repeats from memory
            self._recent[key] = found
            if len(self._recent) > RECENT_QUERIES:
                self._recent.popitem(last=False)
        return list(found)


_REGISTERED: dict[str, Retriever] = {}
_BUILT: dict[tuple[str, str], Retriever] = {}
_LOCK = threading.Lock()


def register_retriever(name: str, retriever: Retriever) -> None:
    """Make another retriever (a web search, a database) available by name, in place of a corpus folder."""
    _REGISTERED[name] = retriever


def retriever_for(corpus: str, embedding_model: str = "") -> Retriever:
    """The registered retriever of that name, or a faiss index over the corpus folder (built once per process)."""
    if corpus in _REGISTERED:
        return _REGISTERED[corpus]
    key = (str(Path(corpus).resolve()), embedding_model)
    with _LOCK:
        if key not in _BUILT:
            _BUILT[key] = FaissRetriever(load_corpus(corpus), get_embedder(embedding_model))
        return _BUILT[key]
