"""File sandboxes for big SQLite sources: a copy of the file per dialogue, in a scratch folder of the run's.

An in-memory copy costs the whole database in memory per dialogue in flight; above a size
(Settings.sandbox_file_above_mb) a sandbox is a copy of the file instead (a reflink where the file system
offers one, so only the pages a dialogue writes take space), and memory stays what SQLite's page cache
holds. The copies of one run live in one folder named by a hash of the run id, under Settings.sandbox_dir
(default: the system's temporary folder): each sandbox removes its own file when it closes, the run's end
removes the folder, and `resume` removes what a killed attempt left there before it starts.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sqlite3
import tempfile
import uuid
from pathlib import Path

from environment.sources.sqlite.introspect import open_read_only
from state.config import Settings

FICLONE = 0x40049409  # Linux's ioctl that shares a file's blocks (btrfs, xfs, bcachefs; not ext4)
FOLDER = "forge-sandboxes"


def file_threshold_bytes() -> float:
    return Settings().sandbox_file_above_mb * 2**20


def scratch_folder(run_id: str) -> Path:
    """The folder of one run's file sandboxes (every process of the run finds the same)."""
    root = Path(Settings().sandbox_dir or tempfile.gettempdir())
    return root / FOLDER / hashlib.sha256(run_id.encode("utf-8")).hexdigest()[:10]


def _reflink(source: Path, target: Path) -> bool:
    try:
        with source.open("rb") as src, target.open("wb") as dst:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
        return True
    except OSError:
        target.unlink(missing_ok=True)
        return False


def copy_database(source: Path, folder: Path) -> Path:
    """A private copy of a SQLite file in `folder`: a reflink, else a plain copy; through SQLite's backup
    where the source has a write-ahead log (its latest pages may be there, not in the file)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{uuid.uuid4().hex}.sqlite"
    wal = Path(f"{source}-wal")
    if wal.exists() and wal.stat().st_size:
        src, dst = open_read_only(source), sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
    elif not _reflink(source, target):
        shutil.copyfile(source, target)
    os.chmod(target, 0o600)
    return target


def remove_copy(path: Path) -> None:
    for leftover in (path, Path(f"{path}-journal"), Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)


def remove_scratch(run_id: str) -> int:
    """Remove a run's file sandboxes (a killed attempt's, or the run's at its end); how many files went."""
    folder = scratch_folder(run_id)
    if not folder.is_dir():
        return 0
    count = sum(1 for p in folder.iterdir() if p.suffix == ".sqlite")
    shutil.rmtree(folder, ignore_errors=True)
    return count
