"""The run folder: one owner at a time, every file written whole or appended line by line, never half written."""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from environment.errors import InputError, RunError
# the file names are re-exported: the run-making code names a run folder's files through this module
from runner.layout import (CHECKPOINTS, CONFIG, DIALOGUES, LLM_CACHE, OWNER_LOCK, REJECTED, STATS,  # noqa: F401
                           TIMINGS, TOOLSET, TOOLSET_REPORT, RunFiles)


RUNS = Path("runs")  # where a run goes when no --out names its folder


def run_name(*parts: str, seed: int, started: time.struct_time | None = None) -> str:
    """A new run's name (its folder's, its run id): what it is, its seed and when it started, e.g.
    clinic-dialogue-s3-20260102-030405. The one place a run's name is built, whatever the command."""
    return "-".join([*parts, f"s{seed}", time.strftime("%Y%m%d-%H%M%S", started or time.localtime())])


def default_run_dir(*parts: str, seed: int) -> Path:
    """The folder of a new run that names none: runs/<run_name>."""
    return RUNS / run_name(*parts, seed=seed)


class DiskFullError(RunError):
    """The disk filled up while the run was writing: the run stops, and `resume` continues it."""


def is_disk_full(exc: BaseException) -> bool:
    """An OS write refused for lack of space, or SQLite saying the same in its own words."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "database or disk is full" in str(exc)


def disk_full_error(path: Path, folder: Path) -> DiskFullError:
    return DiskFullError(f"the disk is full (writing {path}); free some space, then continue the run with: "
                         f"python -m graphs.run resume {folder}")


def write_fully(fd: int, data: bytes) -> None:
    """Every byte of data, however many writes it takes (the one path run files are written through)."""
    written = 0
    while written < len(data):
        written += os.write(fd, data[written:])


@contextmanager
def _writing(folder: Path, target: Path) -> Iterator[None]:
    """Turn a full disk while writing `target` into one line that says how to go on."""
    try:
        yield
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(target, folder) from None
        raise


def create_run_dir(path: Path) -> None:
    """Create a new, empty run folder, or say in one line why it cannot be."""
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except OSError as exc:  # e.g. a name too long for the file system
        raise InputError(f"unusable output folder {str(path)[:80]}…: {exc.strerror}") from None
    if exists and not is_dir:
        raise InputError(f"output path exists and is not a folder: {path} (choose another --out)")
    if exists and any(child.name != OWNER_LOCK for child in path.iterdir()):
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
def new_run_folder(path: Path, command: str = "generate") -> Iterator["RunFolder"]:
    """A new, empty run folder for setting a run up, owned by this process; if the setup fails, nothing of
    it is left behind. On success the folder stays owned: the caller releases it (`with folder:`)."""
    try:
        created = not path.exists()
    except OSError:
        created = True
    create_run_dir(path)
    folder = RunFolder(path).own(command)  # refused: another process set it up first, and it is theirs
    try:
        yield folder
    except BaseException:
        if created:
            shutil.rmtree(path, ignore_errors=True)
        else:
            for child in path.iterdir():
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()
        folder.release()
        raise


class RunFolder(RunFiles):
    """A run folder as its one writer sees it: owned, written whole or a line at a time."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._owner_fd: int | None = None

    def own(self, command: str) -> "RunFolder":
        """Make this process the folder's only writer, or refuse in one line naming the process that is.

        The lock is an flock on a file in the folder: the kernel drops it when its process ends, however
        it ends, so a killed run never blocks the next `resume`. Nothing is written unless it is taken.
        """
        if self._owner_fd is not None:
            return self
        lock = self.file(OWNER_LOCK)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_owner(fd)
            os.close(fd)
            raise InputError(f"run folder {self.path} is in use by process {holder.get('pid', '?')} on "
                             f"{holder.get('host', '?')} ({holder.get('command', '?')}, since "
                             f"{holder.get('since', '?')}); wait for it to end, or stop it first") from None
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                 "argv": " ".join(sys.argv[1:])[:300], "since": dt.datetime.now().isoformat(timespec="seconds")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(owner).encode(), 0)
        except OSError:  # the lock holds even where its note cannot be written (a full disk)
            pass
        self._owner_fd = fd
        return self

    def release(self) -> None:
        if self._owner_fd is not None:
            os.close(self._owner_fd)  # the lock file stays: unlinking it would let two processes lock two files
            self._owner_fd = None

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def write_json(self, name: str, data: Any) -> None:
        """Write a whole JSON file atomically: a temporary file, flushed, renamed into place."""
        target = self.file(name)
        tmp = target.with_name(f".{target.name}.tmp")
        self._replace(tmp, target, (json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n").encode())

    def _replace(self, tmp: Path, target: Path, data: bytes) -> None:
        try:
            with _writing(self.path, target):
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    write_fully(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def append_line(self, name: str, record: dict[str, Any]) -> None:
        """Append one JSON line, flushed to disk; a write that fails part way (a full disk) is taken back."""
        data = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        target = self.file(name)
        with _writing(self.path, target):
            fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                try:
                    write_fully(fd, data)
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, size)  # no torn line is left for the next append to follow
                    raise
            finally:
                os.close(fd)

    def iter_raw_lines(self, name: str) -> Iterator[bytes]:
        """The complete, non-blank lines of a JSONL file as bytes; a torn last line is cut off first, so the
        next append starts on a line of its own."""
        path = self.file(name)
        if path.exists():
            with _writing(self.path, path):
                _cut_torn_tail(path)
        yield from super().iter_raw_lines(name)

    def append_raw_lines(self, name: str, lines: Iterator[bytes]) -> int:
        """Append whole lines as they are, flushed to disk once at the end; how many were written."""
        first = next(lines, None)
        if first is None:
            return 0  # no empty file where there is nothing to add
        count = 1
        target = self.file(name)
        with _writing(self.path, target), target.open("ab") as out:
            out.write(first)
            for raw in lines:
                out.write(raw)
                count += 1
            out.flush()
            os.fsync(out.fileno())
        return count

    def drop_lines(self, name: str, ids: set[str]) -> None:
        """Rewrite a JSONL file without the lines of the given ids, streaming; the others keep their bytes."""
        target = self.file(name)
        if not target.exists():
            return
        tmp = target.with_name(f".{target.name}.tmp")
        with _writing(self.path, target):
            with tmp.open("wb") as out:
                for raw in self.iter_raw_lines(name):
                    if json.loads(raw).get("id") not in ids:
                        out.write(raw)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)

    def rewrite_lines(self, name: str, records: list[dict[str, Any]]) -> None:
        """Replace a JSONL file whole (a temporary file renamed into place)."""
        target = self.file(name)
        tmp = target.with_name(f".{target.name}.tmp")
        self._replace(tmp, target, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n"
                                           for r in records).encode("utf-8"))

    def sort_dataset(self) -> None:
        """Both dataset files in id order: the last step of every command that adds dialogues."""
        for name in (DIALOGUES, REJECTED):
            self.sort_lines(name)

    def sort_lines(self, name: str) -> None:
        """Put a JSONL file's lines in id order, so the dataset's bytes do not depend on which dialogue
        happened to finish first. Only ids and offsets are held; the lines are copied one at a time."""
        target = self.file(name)
        if not target.exists():
            return
        with _writing(self.path, target):
            _cut_torn_tail(target)
        index: list[tuple[str, int, int]] = []
        offset = 0
        with target.open("rb") as fh:
            for raw in fh:
                if raw.strip():
                    index.append((str(json.loads(raw).get("id", "")), offset, len(raw)))
                offset += len(raw)
        ordered = sorted(index, key=lambda entry: entry[0])
        if ordered == index and sum(length for _, _, length in index) == offset:
            return
        tmp = target.with_name(f".{target.name}.tmp")
        with _writing(self.path, target):
            with target.open("rb") as source, tmp.open("wb") as out:
                for _, start, length in ordered:
                    source.seek(start)
                    out.write(source.read(length))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)


def _read_owner(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _cut_torn_tail(path: Path) -> None:
    """Cut off a last line without its newline (a kill mid-write), reading only the file's tail."""
    size = path.stat().st_size
    if not size:
        return
    with path.open("r+b") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        end = size
        while end > 0:
            start = max(0, end - 65536)
            fh.seek(start)
            found = fh.read(end - start).rfind(b"\n")
            if found >= 0:
                fh.truncate(start + found + 1)
                return
            end = start
        fh.truncate(0)
