"""Build the report page: statistics, charts and the dialogue browser in one HTML file that needs no network."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import plotly.offline
from rich.console import Console

from environment.errors import InputError
from results.exporters.card import loading_guide, token_section
from results.exporters.dedup import embed_dialogues, nearest_similarity
from results.exporters.openai_format import trl_line
from results.exporters.source import SourceRun, load_runs
from results.exporters.template_check import ChatTemplate, TemplateReport, check_lines
from results.report.browser import browser_json
from results.report.evaluation_page import is_evaluation, render_evaluation_report
from results.report.figures import all_figures
from results.report.summary import similarity_summary, summarize_run
from results.stats import database_rows, read_run_stats, stats_rows

HERE = Path(__file__).parent
WIDE_CHARTS = ("tools", "rejections")  # long labels: these take the full width


def _summaries(run_dirs: list[Path], console: Console, embedding_model: str):
    from knowledge.embedder import get_embedder

    runs = load_runs(run_dirs)
    stats = read_run_stats(run_dirs)
    embedder = get_embedder(embedding_model)
    summaries = [summarize_run(run, stats[run.label],
                               nearest_similarity(embed_dialogues(run.accepted, embedder, console)))
                 for run in runs]
    return runs, stats, summaries


def _split_rows(run_dirs: list[Path]) -> list[tuple[str, list[str]]]:
    """The RL split's sizes (rl/splits.py), where any run has one recorded."""
    from rl.splits import read_split

    records = [read_split(d) for d in run_dirs]
    if not any(records):
        return []
    return [("RL split, train / test tasks",
             [f"{len(r.train)} / {len(r.test)} (by {r.by})" if r else "—" for r in records])]


def _token_check(runs: list[SourceRun], template: ChatTemplate | None) -> TemplateReport | None:
    """Tokens per valid dialogue as the template renders its trl line (what TRL trains on)."""
    if template is None:
        return None
    return check_lines(template, [trl_line(d) for run in runs for d in run.accepted])[0]


def render_report(run_dirs: list[Path], console: Console, embedding_model: str = "",
                  check_template: Path | None = None) -> str:
    template = ChatTemplate(check_template) if check_template is not None else None  # refused before the work
    runs, stats, summaries = _summaries(run_dirs, console, embedding_model)
    figures = [(name, fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"chart-{name}",
                                  config={"displaylogo": False, "responsive": True}))
               for name, fig in all_figures(summaries)]
    dialogues = [d for run in runs for d in run.dialogues]
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE), autoescape=True,
                                     undefined=jinja2.StrictUndefined)
    return environment.get_template("template.html").render(
        title="Dataset card: " + ", ".join(run.label for run in runs),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        runs=runs, stats_header=list(stats), stats_rows=[*stats_rows(stats), *_split_rows(run_dirs)],
        databases=database_rows(dialogues), figures=figures, wide=WIDE_CHARTS,
        similarity={s.label: similarity_summary(s.similarity) for s in summaries},
        plotly_js=plotly.offline.get_plotlyjs(), browser_js=(HERE / "browser.js").read_text(encoding="utf-8"),
        dialogues_json=browser_json(dialogues),
        tokens=token_section(_token_check(runs, template), None, 0),
        loading=loading_guide('{"train": "data/train-00000-of-00001.parquet"}'),
    )


def write_report(run_dirs: list[Path], out: Path, console: Console, embedding_model: str = "",
                 check_template: Path | None = None) -> Path:
    if out.exists() and out.is_dir():
        raise InputError(f"--out is a folder: {out} (give the HTML file to write, e.g. {out / 'report.html'})")
    evaluations = [is_evaluation(d) for d in run_dirs]
    if any(evaluations) and not all(evaluations):
        raise InputError("give `report` either run folders or evaluation folders, not both")
    html = render_evaluation_report(run_dirs) if all(evaluations) else \
        render_report(run_dirs, console, embedding_model, check_template)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)  # whole or not at all
    return out

