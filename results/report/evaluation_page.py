"""The report of one or more evaluation folders: pass^k curves side by side, the per-database table, and the
failed trials with what they changed, in one HTML file that needs no network."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import plotly.graph_objects as go
import plotly.offline

from results.evaluation import EvaluationSummary, read_evaluation, summarize, summary_rows
from results.report.figures import PALETTE, _layout
from runner import layout

HERE = Path(__file__).parent


def is_evaluation(folder: Path) -> bool:
    return layout.run_kind(folder) == "evaluate"


def _curve(summaries: dict[str, EvaluationSummary]) -> str:
    fig = go.Figure()
    for i, (label, s) in enumerate(summaries.items()):
        points = [p for p in s.pass_hat if p.value is not None]
        fig.add_trace(go.Scatter(
            x=[p.k for p in points], y=[p.value for p in points], name=label, mode="lines+markers",
            marker_color=PALETTE[i % len(PALETTE)],
            error_y=dict(type="data", symmetric=False, array=[(p.high or p.value) - p.value for p in points],
                         arrayminus=[p.value - (p.low or p.value) for p in points])))
    fig = _layout(fig, "pass^k (95% bootstrap interval)", "k", "pass^k")
    fig.update_xaxes(dtick=1)
    fig.update_yaxes(range=[0, 1.05])
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id="chart-pass-k",
                       config={"displaylogo": False, "responsive": True})


def _text(message: dict) -> str:
    calls = [f"{c['function']['name']}({c['function'].get('arguments', '')})" for c in message.get("tool_calls") or []]
    return "\n".join(filter(None, [message.get("content") or "", *calls]))


def render_evaluation_report(eval_dirs: list[Path]) -> str:
    labels = layout.run_labels(eval_dirs)
    summaries, failed, databases, variants = {}, [], [], []
    for label, folder in zip(labels, eval_dirs):
        config, tasks, trials = read_evaluation(folder)
        summary = summaries[label] = summarize(config, tasks, trials)
        for axis, rows in (("database", databases), ("variant", variants)):
            for group, figures in summary.breakdowns.get(axis, {}).items():
                rows.append([label, group, figures.tasks, *(
                    "-" if p.value is None else f"{p.value:.3f}" for p in figures.pass_hat)])
        failed.extend({"label": label, "id": t.id, "fault": t.fault, "detail": t.fault_detail, "parts": t.parts,
                       "diff": json.dumps(t.real_diff.model_dump(mode="json")["tables"], indent=1, ensure_ascii=False),
                       "messages": [{"role": m.get("role", ""), "text": _text(m)} for m in t.messages]}
                      for t in trials if t.reward == 0)
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE), autoescape=True,
                                     undefined=jinja2.StrictUndefined)
    return environment.get_template("evaluation.html").render(
        title="Evaluation: " + ", ".join(labels), generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        labels=labels, rows=summary_rows(summaries), curve=_curve(summaries), plotly_js=plotly.offline.get_plotlyjs(),
        ks=range(1, max(s.trials_per_task for s in summaries.values()) + 1), databases=databases, variants=variants,
        failed=failed)
