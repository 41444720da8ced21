"""A run's statistics (stats.json), computed from the lines of its run folder."""

from __future__ import annotations

from typing import Any, Iterator

from runner import run_folder as rf
from runner.databases import load_toolset, report_file_of
from runner.run_folder import RunFolder
from runner.stats import RunStats, per_database_stats, run_stats
from state.config import RunConfig
from state.tools import Toolset


def summarize(folder: RunFolder) -> RunStats:
    """Compute stats.json from the run folder's lines."""
    config = RunConfig.model_validate(folder.read_json(rf.CONFIG))
    reports = {}
    for source in config.sources():
        report_file = report_file_of(source.toolset)
        reports[source.path] = Toolset.model_validate(folder.read_json(report_file)) \
            if folder.file(report_file).exists() else Toolset(tools=load_toolset(folder.file(source.toolset)))
    latency = {r["id"]: r["latency_s"] for r in folder.iter_lines(rf.TIMINGS)}  # the last one of a dialogue counts

    def with_latency(records: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for record in records:
            record["metadata"].setdefault("latency_s", latency.get(record["id"], 0.0))
            yield record

    tools_proposed = sum(max(r.proposed, len(r.tools)) for r in reports.values())
    stats = run_stats(with_latency(folder.iter_lines(rf.DIALOGUES)), with_latency(folder.iter_lines(rf.REJECTED)),
                      tools_proposed=tools_proposed, tools_accepted=sum(len(r.tools) for r in reports.values()),
                      backend=str(config.settings.get("backend", "")))
    if len(reports) > 1:
        stats.per_database = per_database_stats(list(with_latency(folder.iter_lines(rf.DIALOGUES))),
                                                list(with_latency(folder.iter_lines(rf.REJECTED))),
                                                {p: len(r.tools) for p, r in reports.items()})
    for name in (rf.DIALOGUES, rf.REJECTED):
        if folder.file(name).exists():
            folder.sort_lines(name)
    folder.write_json(rf.STATS, stats.model_dump())
    return stats
