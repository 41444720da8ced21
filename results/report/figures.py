"""The report's charts, drawn with plotly: one trace per run, so several runs read side by side."""

from __future__ import annotations

import plotly.graph_objects as go

from results.report.summary import RunSummary

PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")
STAGES = (("tools_accepted", "tools accepted"), ("dialogues_completed", "dialogues completed"),
          ("tasks_state_match", "tasks whose state matched"), ("tasks_valid", "tasks valid"),
          ("dialogues_valid", "dialogues valid"))
TOP_TOOLS = 25


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = 340) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, height=height, template="plotly_white",
                      margin=dict(l=60, r=20, t=50, b=50), legend=dict(orientation="h", y=-0.25),
                      barmode="group")
    return fig


def _empty(fig: go.Figure, text: str) -> go.Figure:
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5, font=dict(size=14))
    return fig


def histogram(runs: list[RunSummary], field: str, title: str, x: str) -> go.Figure:
    """Counts of a whole-number figure, runs side by side: one bin per value where the values span few."""
    values = [v for r in runs for v in getattr(r, field)]
    span = max(values, default=0) - min(values, default=0)
    bins = dict(size=1) if span <= 15 else dict(size=max(1, round(span / 15)))
    fig = go.Figure([go.Histogram(x=getattr(run, field), name=run.label, marker_color=PALETTE[i % len(PALETTE)],
                                  xbins=bins) for i, run in enumerate(runs)])
    fig = _layout(fig, title, x, "dialogues" if field != "steps" else "user requests")
    fig.update_layout(bargap=0.15)
    if span <= 15:
        fig.update_xaxes(dtick=1)
    return fig if values else _empty(fig, "no valid dialogues")


def tool_usage(runs: list[RunSummary]) -> go.Figure:
    totals: dict[str, int] = {}
    for run in runs:
        for tool, n in run.tool_calls.items():
            totals[tool] = totals.get(tool, 0) + n
    top = sorted(totals, key=lambda t: (-totals[t], t))[:TOP_TOOLS][::-1]
    fig = go.Figure([go.Bar(y=top, x=[run.tool_calls.get(t, 0) for t in top], orientation="h", name=run.label,
                            marker_color=PALETTE[i % len(PALETTE)]) for i, run in enumerate(runs)])
    title = "Tool calls in valid dialogues" + (f" (the {TOP_TOOLS} most used)" if len(totals) > TOP_TOOLS else "")
    fig = _layout(fig, title, "calls", "", height=max(340, 22 * len(top) * max(1, len(runs)) + 120))
    return fig if top else _empty(fig, "no tool calls")


def stage_rates(runs: list[RunSummary]) -> go.Figure:
    labels = [label for _, label in STAGES]
    fig = go.Figure()
    for i, run in enumerate(runs):
        rates = [getattr(run.stages, key) for key, _ in STAGES]
        fig.add_trace(go.Bar(x=labels, y=[None if r is None else round(100 * r, 1) for r in rates], name=run.label,
                             marker_color=PALETTE[i % len(PALETTE)],
                             text=["n/a" if r is None else f"{100 * r:.1f}%" for r in rates], textposition="auto"))
    fig = _layout(fig, "Pass rate of each stage", "", "% passing")
    fig.update_yaxes(range=[0, 105])
    return fig


def rejection_reasons(runs: list[RunSummary]) -> go.Figure:
    reasons = sorted({r for run in runs for r in run.rejection_reasons},
                     key=lambda r: -sum(run.rejection_reasons.get(r, 0) for run in runs))[::-1]
    fig = go.Figure([go.Bar(y=reasons, x=[run.rejection_reasons.get(r, 0) for r in reasons], orientation="h",
                            name=run.label, marker_color=PALETTE[i % len(PALETTE)]) for i, run in enumerate(runs)])
    fig = _layout(fig, "Why dialogues were rejected", "dialogues", "",
                  height=max(340, 30 * len(reasons) * max(1, len(runs)) + 120))
    fig.update_yaxes(automargin=True)
    return fig if reasons else _empty(fig, "no dialogue was rejected")


def difficulty_mix(runs: list[RunSummary]) -> go.Figure:
    levels = list(dict.fromkeys(level for run in runs for level in run.difficulty))
    fig = go.Figure()
    for i, run in enumerate(runs):
        counts = [run.difficulty.get(level, 0) for level in levels]
        passed = [run.difficulty_valid.get(level, 0) for level in levels]
        fig.add_trace(go.Bar(x=levels, y=counts, name=run.label, marker_color=PALETTE[i % len(PALETTE)],
                             customdata=[f"{p}/{c} judged valid" for p, c in zip(passed, counts)],
                             hovertemplate="%{x}: %{y} tasks, %{customdata}<extra>" + run.label + "</extra>"))
    return _layout(fig, "Difficulty mix (tasks)", "difficulty", "tasks")


def similarity(runs: list[RunSummary]) -> go.Figure:
    fig = go.Figure()
    for i, run in enumerate(runs):
        fig.add_trace(go.Histogram(x=run.similarity, name=run.label, marker_color=PALETTE[i % len(PALETTE)],
                                   xbins=dict(start=0, end=1.0001, size=0.02), opacity=0.75 if len(runs) > 1 else 1))
    fig = _layout(fig, "Similarity to the nearest other dialogue (cosine, MiniLM embeddings)", "cosine similarity",
                  "dialogues")
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(range=[0, 1.0])
    return fig if any(r.similarity for r in runs) else _empty(fig, "fewer than two valid dialogues")


def all_figures(runs: list[RunSummary]) -> list[tuple[str, go.Figure]]:
    """(name, figure) in the order the card shows them."""
    return [
        ("turns", histogram(runs, "turns", "Turns per dialogue", "turns (user, assistant and tool messages)")),
        ("steps", histogram(runs, "steps", "Steps per user request", "tool-use iterations")),
        ("tasks", histogram(runs, "tasks", "Tasks per dialogue", "tasks")),
        ("similarity", similarity(runs)),
        ("stages", stage_rates(runs)),
        ("difficulty", difficulty_mix(runs)),
        ("tools", tool_usage(runs)),
        ("rejections", rejection_reasons(runs)),
    ]
