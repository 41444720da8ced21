"""The run folder: every file written whole or appended line by line, never half written."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from environment.errors import InputError, read_json_input

CONFIG = "config.json"
TOOLSET = "toolset.json"
TOOLSET_REPORT = "toolset_report.json"
DIALOGUES = "dialogues.jsonl"
REJECTED = "rejected.jsonl"
STATS = "stats.json"
CHECKPOINTS = "checkpoints.sqlite"
LLM_CACHE = "llm_cache.sqlite"


def run_labels(run_dirs: list[Path]) -> list[str]:
    """A short label per run folder: its name, or its path where an earlier run has the same name."""
    labels: list[str] = []
    for run_dir in run_dirs:
        labels.append(run_dir.name if run_dir.name not in labels else str(run_dir))
    return labels


def create_run_dir(path: Path) -> None:
    """Create a new, empty run folder, or say in one line why it cannot be."""
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except OSError as exc:  # e.g. a name too long for the file system
        raise InputError(f"unusable output folder {str(path)[:80]}…: {exc.strerror}") from None
    if exists and not is_dir:
        raise InputError(f"output path exists and is not a folder: {path} (choose another --out)")
    if exists and any(path.iterdir()):
        raise InputError(f"output folder already exists and is not empty: {path} (choose another --out, "
                         f"or continue it with: python -m graphs.run resume {path})")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"output folder is not writable: {path} ({exc.strerror or exc}; choose another --out)") \
            from None


@contextmanager
def new_run_folder(path: Path) -> Iterator["RunFolder"]:
    """A new, empty run folder for setting a run up; if the setup fails, nothing of it is left behind."""
    try:
        created = not path.exists()
    except OSError:
        created = True
    create_run_dir(path)
    try:
        yield RunFolder(path)
    except BaseException:
        if created:
            shutil.rmtree(path, ignore_errors=True)
        else:
            for child in path.iterdir():
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()
        raise


class RunFolder:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, data: Any) -> None:
        """Write a whole JSON file atomically: a temporary file renamed into place."""
        target = self.file(name)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, target)

    def read_json(self, name: str) -> Any:
        return read_json_input(self.file(name), "run file")

    def append_line(self, name: str, record: dict[str, Any]) -> None:
        """Append one JSON line with a single write, flushed to disk."""
        data = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        fd = os.open(self.file(name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def read_lines(self, name: str) -> list[dict[str, Any]]:
        """The complete lines of a JSONL file; a torn last line (from a kill mid-write) is cut off."""
        path = self.file(name)
        if not path.exists():
            return []
        raw = path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            raw = raw[: raw.rfind(b"\n") + 1]
            with path.open("r+b") as fh:
                fh.truncate(len(raw))
        records = []
        for n, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                raise InputError(f"{path} line {n} is not JSON; the run folder may be damaged") from None
        return records

    def rewrite_lines(self, name: str, records: list[dict[str, Any]]) -> None:
        target = self.file(name)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records),
                       encoding="utf-8")
        os.replace(tmp, target)

    def finished_ids(self) -> set[str]:
        return {r["id"] for name in (DIALOGUES, REJECTED) for r in self.read_lines(name)}
