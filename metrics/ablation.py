"""The ablation view: the quality of dialogues made three ways, side by side, and their similarity plot."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from state.agent import QualityReport

MODES = {"direct": "direct", "profile": "+ profile", "actions": "+ actions"}
LONG = {"direct": "direct interaction", "profile": "+ user profile", "actions": "+ action sequence"}


def ablation_table(reports: dict[str, QualityReport]) -> Table:
    table = Table(title="Ablation: dialogue quality by how the user is built")
    table.add_column("metric")
    for mode in reports:
        table.add_column(MODES.get(mode, mode), justify="right")
    rows = [
        ("Dialogues", lambda r: str(r.dialogues)),
        ("Similarity mean (lower: more diverse)", lambda r: f"{r.similarity.mean:.3f}"),
        ("Similarity max", lambda r: f"{r.similarity.max:.3f}"),
        ("Similarity min", lambda r: f"{r.similarity.min:.3f}"),
        ("Distinct-1", lambda r: f"{r.distinct_1:.3f}"),
        ("Distinct-2", lambda r: f"{r.distinct_2:.3f}"),
        ("Unique topics", lambda r: str(r.topics.unique)),
        ("Max topic repetition", lambda r: str(r.topics.max_repetition)),
        ("Judge coherence (1-5)", lambda r: f"{r.judge.coherence:.2f}" if r.judge else "-"),
        ("Judge fluency (1-5)", lambda r: f"{r.judge.fluency:.2f}" if r.judge else "-"),
        ("Judge diversity (1-5)", lambda r: f"{r.judge.diversity:.2f}" if r.judge else "-"),
    ]
    for label, render in rows:
        table.add_row(label, *(render(r) for r in reports.values()))
    return table


def similarity_plot(reports: dict[str, QualityReport], path: Path) -> Path:
    """Histograms of pairwise dialogue similarity, one per mode, written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    every = [v for r in reports.values() for v in (r.similarity.values or [r.similarity.mean])]
    low = min(0.0, min(every, default=0.0)) if any(v < 0 for v in every) else \
        max(0.0, int(min(every, default=0.0) * 20) / 20 - 0.05)
    bins = [low + (1.0 - low) * i / 40 for i in range(41)]
    for mode, report in reports.items():
        values = report.similarity.values or [report.similarity.mean]
        ax.hist(values, bins=bins, alpha=0.5, label=f"{LONG.get(mode, mode)} (mean {report.similarity.mean:.3f})")
    ax.set_xlabel("cosine similarity between two dialogues")
    ax.set_ylabel("pairs")
    ax.set_title("Pairwise dialogue similarity")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
