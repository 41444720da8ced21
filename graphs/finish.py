"""The end of every command that adds dialogues to a run: the run's statistics are computed from its lines
(results/), written to stats.json while this process still owns the folder (runner/), and printed."""

from __future__ import annotations

from rich.console import Console

from results.stats import RunStats, database_table, stats_table
from results.summary import summarize
from runner import run_folder as rf
from runner.run_folder import RunFolder


def write_stats(folder: RunFolder) -> RunStats:
    """stats.json, computed anew from the run folder's lines."""
    stats = summarize(folder)
    folder.write_json(rf.STATS, stats.model_dump())
    return stats


def finish_run(folder: RunFolder, console: Console) -> RunStats:
    """stats.json written, and the statistics table printed with where the dialogues are."""
    stats = write_stats(folder)
    console.print(stats_table({folder.path.name: stats}))
    if stats.per_database:
        console.print(database_table(stats))
    console.print(f"{stats.samples} valid dialogues in {folder.file(rf.DIALOGUES)}, "
                  f"{stats.rejected} rejected in {folder.file(rf.REJECTED)}")
    return stats
