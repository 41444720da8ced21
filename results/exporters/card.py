"""The dataset card (README.md) written beside a Hugging Face export."""

from __future__ import annotations

from typing import Any

from results.exporters.hf import parquet_name
from results.exporters.source import SourceDialogue
from results.stats import RunStats, database_rows, stats_rows


WHICH = {"valid": "the dialogues judged valid", "rejected": "the rejected dialogues (each with its `reason`)",
         "all": "every dialogue, valid and rejected (see `valid` and `reason`)"}


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def dataset_card(title: str, splits: dict[str, list[SourceDialogue]], run_stats: dict[str, RunStats],
                 only: str, dropped: int, dedup: float | None) -> str:
    exported = [d for rows in splits.values() for d in rows]
    configs = "\n".join(f"  - split: {name}\n    path: {parquet_name(name)}" for name in splits)
    header = (f"---\npretty_name: {title}\n"
              "license: \"\"  # choose the license you publish this data under\n"
              "task_categories:\n- text-generation\ntags:\n- tool-use\n- function-calling\n- synthetic\n- multi-turn\n"
              f"configs:\n- config_name: default\n  data_files:\n{configs}\n---\n")
    databases = database_rows(exported)
    dedup_line = (f"Near-duplicates removed at cosine similarity ≥ {dedup}: {dropped} (listed in `export.json`)."
                  if dedup is not None else "No near-duplicate removal was applied.")
    return header + f"""
# {title}

Multi-turn, tool-use dialogues synthesized by Dialogue Forge: a simulated user pursues a goal one piece at
a time, an assistant answers by calling tools (parameterized SQL on a copy of a real database, or
simulated tools), and a validator judges each task against its rubric. This export holds
{WHICH[only]} of {len(run_stats)} run(s).

## Splits

{_table(["split", "dialogues"], [[name, len(rows)] for name, rows in splits.items()])}

Each dialogue's split follows from a hash of its id, so it stays in the same split across re-exports and
when more runs are added. {dedup_line}

## Loading

```python
from datasets import load_dataset, load_from_disk
ds = load_dataset("parquet", data_files={{{", ".join(f'"{n}": "{parquet_name(n)}"' for n in splits)}}})
ds = load_from_disk("dataset")
```

Columns: `id`, `run`, `source_database`, `valid`, `reason` (why a rejected dialogue was rejected),
`difficulty` (one per task), `messages` (OpenAI chat messages: `role`, `content`, `reasoning_content`,
`tool_calls` with JSON-string `arguments`, `tool_call_id`, `name`; null where a message has no such
field), `tools` (OpenAI function specs as a JSON string: `json.loads` it) and `metadata` (tasks with
rubrics, verdicts, per-dialogue statistics; a JSON string too).

## Statistics of the source runs

{_table(["metric", *run_stats], [[label, *cells] for label, cells in stats_rows(run_stats)])}

## Databases

{_table(["database", "runs", "toolsets", "valid", "rejected", "valid rate", "tasks", "turns (mean)"],
        [[r.database, r.runs, r.toolsets, r.valid, r.rejected, f"{100 * r.valid_rate:.1f}%", r.tasks, r.turns_mean]
         for r in databases])}

## License

Not set: fill in the `license` field above with the terms you publish this data under, and check that
they fit the source databases'.
"""
