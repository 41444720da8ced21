"""A knowledge corpus: a folder of text or markdown documents, split into chunks of a few paragraphs."""

from __future__ import annotations

import re
from pathlib import Path

from environment.errors import InputError
from state.agent import KnowledgeChunk

SUFFIXES = (".md", ".markdown", ".txt")


def read_text_file(path: Path, what: str) -> str:
    """A UTF-8 text file's content, or one line saying why it cannot be read."""
    if not path.exists():
        raise InputError(f"{what} not found: {path}")
    if path.is_dir():
        raise InputError(f"{what} is a folder, not a file: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not text.strip():
        raise InputError(f"{what} is empty: {path}")
    return text


def corpus_files(folder: Path) -> list[Path]:
    if not folder.exists():
        raise InputError(f"knowledge corpus not found: {folder} (pass a folder of .md or .txt documents)")
    if not folder.is_dir():
        raise InputError(f"knowledge corpus must be a folder of .md or .txt documents: {folder}")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def chunk_text(text: str, max_chars: int = 700) -> list[str]:
    """Paragraphs packed into chunks of at most about `max_chars`; each chunk keeps the document title."""
    title = ""
    lines = text.strip().splitlines()
    if lines and lines[0].startswith("#"):
        title = lines[0].lstrip("#").strip()
        text = "\n".join(lines[1:])
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    chunks: list[str] = []
    current = ""
    for para in paragraphs:
        if current and len(current) + len(para) + 2 > max_chars:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{para}" if current else para
    if current:
        chunks.append(current)
    if not chunks and title:
        chunks = [""]
    return [f"{title}\n{c}".strip() if title else c for c in chunks]


def load_corpus(folder: str | Path, max_chars: int = 700) -> list[KnowledgeChunk]:
    """Every document of the folder (recursively), chunked; one clear line if there is nothing to use."""
    folder = Path(folder)
    files = corpus_files(folder)
    chunks: list[KnowledgeChunk] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read corpus document {path}: {getattr(exc, 'strerror', None) or exc}") from None
        source = path.relative_to(folder).as_posix()
        for i, piece in enumerate(chunk_text(text, max_chars)):
            if piece.strip():
                chunks.append(KnowledgeChunk(chunk_id=f"{source}#{i}", source=source, text=piece))
    if not chunks:
        raise InputError(f"knowledge corpus is empty: {folder} has no non-empty .md or .txt documents")
    return chunks
