"""A finished (or stopped) run as the API returns it: its folder, its statistics, its dataset and what was
refused, and what can be done with it next (verify, export, report)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from rich.console import Console

from dialogue_forge.errors import InvalidInput, RunFailed, forge_errors
from results.stats import RunStats, database_table, stats_table
from results.summary import summarize
from runner import layout
from runner.layout import RunFiles
from runner.run_folder import RunFolder

if TYPE_CHECKING:
    from datasets import Dataset

    from dialogue_forge.outputs import Export, Verification


class RejectedLine(BaseModel):
    """A dialogue the run refused, with the reason it was refused."""

    id: str
    reason: str
    line: dict[str, Any] = Field(description="The whole line as rejected.jsonl holds it.")


@dataclass(frozen=True)
class Run:
    """A run folder (`path`) and its `statistics` (what stats.json holds: dialogues, tasks, tokens, validity...).
    `Run.open(path)` reads one made earlier, by the API or the command line."""

    path: Path
    statistics: RunStats

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """A finished run folder (its stats.json; computed from its lines where it has none)."""
        files = RunFiles(Path(path))
        if not files.file(layout.CONFIG).exists():
            raise InvalidInput(f"not a run folder (no {layout.CONFIG}): {path}")
        with forge_errors():
            stats = files.read_json(layout.STATS) if files.file(layout.STATS).exists() else None
            return cls(path=Path(path), statistics=RunStats.model_validate(stats) if stats else summarize(files))

    def lines(self) -> list[dict[str, Any]]:
        """The valid dialogues, each line as dialogues.jsonl holds it (in the order written)."""
        return RunFiles(self.path).read_lines(layout.DIALOGUES)

    def load_dataset(self) -> Dataset:
        """The valid dialogues as a Hugging Face `datasets.Dataset`, in id order, with the columns and features
        `export(format="hf")` writes (each message and tool a `Json` value; metadata as JSON text)."""
        from datasets import Dataset, disable_progress_bars

        from results.exporters.hf import features, hf_row
        from results.exporters.source import load_run

        disable_progress_bars()
        rows = [hf_row(d) for d in load_run(self.path, self.path.name).accepted]
        columns = features()
        if not rows:  # from_list infers no columns from no rows
            return Dataset.from_dict({name: [] for name in columns}, features=columns)
        return Dataset.from_list(rows, features=columns)

    def rejected(self) -> list[RejectedLine]:
        """The dialogues the run refused, with their reasons (in the order written)."""
        return [RejectedLine(id=str(line.get("id")), reason=str(line.get("reason") or ""), line=line)
                for line in RunFiles(self.path).iter_lines(layout.REJECTED)]

    def verify(self, source: str | None = None, console: Console | None = None) -> Verification:
        """Every call replayed on a fresh copy of the source, every diff and fact checked again (see `verify`)."""
        from dialogue_forge.outputs import verify
        from dialogue_forge.requests import VerifyRequest

        return verify(VerifyRequest(run=self.path, source=source), console=console)

    def export(self, format: str, out: str | Path, console: Console | None = None, **options: Any) -> Export:
        """This run as a training set in the new folder `out` (options: the fields of `ExportRequest`)."""
        from dialogue_forge.outputs import export
        from dialogue_forge.requests import ExportRequest

        return export(ExportRequest(runs=[self.path], format=format, out=Path(out), **options), console=console)

    def report(self, out: str | Path, console: Console | None = None, **options: Any) -> Path:
        """A self-contained HTML dataset card of this run, written to `out`; its path."""
        from dialogue_forge.outputs import report
        from dialogue_forge.requests import ReportRequest

        return report(ReportRequest(runs=[self.path], out=Path(out), **options), console=console)


class NoValidDialogues(RunFailed):
    """The run finished but produced no valid dialogue. `run` is the finished run: its `rejected()` lines say
    why each dialogue was refused."""

    def __init__(self, run: Run) -> None:
        super().__init__(f"no dialogue was valid; the reasons are in {run.path / layout.REJECTED}")
        self.run = run


def write_stats(folder: RunFolder) -> RunStats:
    """stats.json, computed anew from the run folder's lines."""
    stats = summarize(folder)
    folder.write_json(layout.STATS, stats.model_dump())
    return stats


def finish_run(folder: RunFolder, console: Console) -> RunStats:
    """stats.json written (while this process still owns the folder), and the statistics table printed with
    where the dialogues are."""
    stats = write_stats(folder)
    console.print(stats_table({folder.path.name: stats}))
    if stats.per_database:
        console.print(database_table(stats))
    console.print(f"{stats.samples} valid dialogues in {folder.file(layout.DIALOGUES)}, "
                  f"{stats.rejected} rejected in {folder.file(layout.REJECTED)}")
    return stats
