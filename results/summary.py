"""A run's statistics (what stats.json holds), computed from the lines of its run folder."""

from __future__ import annotations

from typing import Any, Iterator

from results.stats import RunStats, per_database_stats, run_stats
from runner import layout
from runner.layout import RunFiles, load_toolset, report_file_of
from state.config import RunConfig
from state.tools import Toolset


def summarize(files: RunFiles) -> RunStats:
    """The statistics of a run from its lines, toolset reports and timings; writing them is the caller's."""
    config = RunConfig.model_validate(files.read_json(layout.CONFIG))
    reports = {}
    for source in config.sources():
        report_file = report_file_of(source.toolset)
        reports[source.label] = Toolset.model_validate(files.read_json(report_file)) \
            if files.file(report_file).exists() else Toolset(tools=load_toolset(files.file(source.toolset)))
    latency = {r["id"]: r["latency_s"] for r in files.iter_lines(layout.TIMINGS)}  # the last one of a dialogue counts

    def with_latency(records: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for record in records:
            record["metadata"].setdefault("latency_s", latency.get(record["id"], 0.0))
            yield record

    tools_proposed = sum(max(r.proposed, len(r.tools)) for r in reports.values())
    stats = run_stats(with_latency(files.iter_lines(layout.DIALOGUES)),
                      with_latency(files.iter_lines(layout.REJECTED)),
                      tools_proposed=tools_proposed, tools_accepted=sum(len(r.tools) for r in reports.values()),
                      backend=str(config.settings.get("backend", "")))
    if len(reports) > 1:
        stats.per_database = per_database_stats(list(with_latency(files.iter_lines(layout.DIALOGUES))),
                                                list(with_latency(files.iter_lines(layout.REJECTED))),
                                                {p: len(r.tools) for p, r in reports.items()})
    return stats
