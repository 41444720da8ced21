"""The dataset card (README.md) written beside a Hugging Face export."""

from __future__ import annotations

from typing import Any

from results.exporters.hf import parquet_name
from results.exporters.source import SourceDialogue
from results.exporters.template_check import TemplateReport
from results.stats import RunStats, database_rows, stats_rows


WHICH = {"valid": "the dialogues judged valid", "rejected": "the rejected dialogues (each with its `reason`)",
         "all": "every dialogue, valid and rejected (see `valid` and `reason`)"}


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def loading_guide(data_files: str) -> str:
    """How to load an export with datasets, TRL and LLaMA-Factory (markdown; the report shows it too)."""
    return f"""```python
from datasets import load_dataset, load_from_disk
ds = load_dataset("parquet", data_files={data_files})   # or load_from_disk("dataset")
ds["train"][0]["messages"]   # chat messages; tool-call arguments are objects, as chat templates expect
```

TRL (its `SFTTrainer` renders `messages` with the tokenizer's chat template and passes `tools`):

```python
from trl import SFTConfig, SFTTrainer
train = ds["train"].select_columns(["messages", "tools"])
SFTTrainer(model=model, processing_class=tokenizer, train_dataset=train, args=SFTConfig(output_dir="out")).train()
```

`python -m graphs.run export RUNS --format trl --out DIR` writes the same lines as `DIR/train.jsonl`, for
`load_dataset("json", data_files="DIR/train.jsonl")`. Check them against your model's template first with
`--check-template TOKENIZER_DIR` (and `--max-tokens N` to leave out what will not fit).

LLaMA-Factory reads ShareGPT: export with `--format sharegpt --out DIR` and set `dataset_dir: DIR` and
`dataset: <name in DIR/dataset_info.json>` in the training YAML (tool calls become `function_call` turns).

OpenAI's fine-tuning API wants tool-call arguments as JSON strings: `--format openai`."""


def token_section(check: TemplateReport | None, max_tokens: int | None, over: int) -> str:
    if check is None or check.tokens is None:
        return ("No chat template was checked: export with `--check-template TOKENIZER_DIR` to see the tokens "
                "per line.")
    t = check.tokens
    limit = f" Lines over {max_tokens} tokens were left out: {over}." if max_tokens is not None else ""
    return (f"Rendered with the chat template of `{check.template}`: {check.lines} lines, tokens per line "
            f"min {t.min}, median {t.median}, p95 {t.p95}, max {t.max}.{limit}")


def dataset_card(title: str, splits: dict[str, list[SourceDialogue]], run_stats: dict[str, RunStats],
                 only: str, dropped: int, dedup: float | None, check: TemplateReport | None = None,
                 max_tokens: int | None = None, over_max_tokens: int = 0) -> str:
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

{loading_guide("{" + ", ".join(f'"{n}": "{parquet_name(n)}"' for n in splits) + "}")}

Columns: `id`, `run`, `source_database`, `valid`, `reason` (why a rejected dialogue was rejected),
`difficulty` (one per task), `messages` (chat messages, each with only its own keys: `role`, `content`,
`reasoning_content` (a reasoning model's trace), `tool_calls` with `arguments` as JSON objects, `tool_call_id`,
`name`), `tools` (OpenAI function specs) and `metadata` (tasks with rubrics, verdicts, per-dialogue statistics;
a JSON string: `json.loads` it). `messages` and `tools` are `datasets.Json` values, so no message, call or tool
gains the keys of another; other parquet readers see them as JSON text.

## Length in tokens

{token_section(check, max_tokens, over_max_tokens)}

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
