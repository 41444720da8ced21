"""Run settings: one object, described fields, environment fallbacks.

Passed to every graph as its runtime context. What a dialogue needs to be replayed (seed, database,
tasks) lives in the graph state instead.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FORGE_", extra="ignore", populate_by_name=True)

    backend: str = Field(
        "", description="'offline', 'openai', or a registered backend name. Empty: openai when a base URL "
        "is configured, else offline."
    )
    model: str = Field("gpt-4o-mini", validation_alias=AliasChoices("model", "FORGE_MODEL", "OPENAI_MODEL"),
                       description="Chat model name on the OpenAI-compatible server.")
    base_url: str | None = Field(None, validation_alias=AliasChoices("base_url", "FORGE_BASE_URL", "OPENAI_BASE_URL"),
                                 description="Base URL of an OpenAI-compatible server (e.g. http://localhost:8000/v1).")
    api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("api_key", "OPENAI_API_KEY"),
                                      description="API key for the server; local servers accept any value.")
    temperature: float = Field(0.7, description="Sampling temperature of the LLM backend.")
    request_timeout: float = Field(60.0, description="Seconds before an LLM request times out.")
    http_retries: int = Field(4, description="Retries with backoff on 429, 5xx and timeouts.")
    parse_retries: int = Field(2, description="Retries that feed a parse or validation error back to the model.")
    max_user_turns_per_task: int = Field(10, description="Guard: user turns before a task is cut off.")
    min_user_turns_per_task: int = Field(2, description="A user may not declare completion before this many turns.")
    max_steps_per_turn: int = Field(6, description="Guard: tool-use iterations before the assistant must answer.")
    max_tool_calls_per_step: int = Field(8, description="Guard: tool calls executed in one assistant step.")
    max_result_rows: int = Field(20, description="Rows of a query result shown to the model (the rest is counted).")
    max_argument_chars: int = Field(10_000, ge=1, description="Longest text a tool argument may carry; a longer one "
                                    "is refused with a tool error naming the argument, before any SQL runs.")
    max_tools: int = Field(40, description="Largest toolset synthesized from a schema.")
    min_tools: int = Field(8, description="Fewer accepted proposals than this are completed with schema-derived tools.")
    llm_cache: str | None = Field(None, description="Path of a SQLite cache of LLM responses: replays cost no calls.")
    executor: Literal["local", "ray"] = Field(
        "local", description="Where dialogues run: 'local' (this machine: an event loop, or --workers processes) "
        "or 'ray' (Ray tasks, each writing its own shard of the run folder).")
    ray_address: str | None = Field(None, description="Head of the Ray cluster (host:port) for the ray executor; "
                                    "empty: a local Ray of the run's own.")

    @model_validator(mode="after")
    def _default_backend(self) -> "Settings":
        if not self.backend:
            self.backend = "openai" if self.base_url else "offline"
        return self

    @property
    def backend_kind(self) -> Literal["offline", "openai", "custom"]:
        return self.backend if self.backend in ("offline", "openai") else "custom"  # type: ignore[return-value]

    def public(self) -> dict[str, object]:
        """The settings as recorded in a run folder: everything but the key."""
        return self.model_dump(exclude={"api_key"})


class RunConfig(BaseModel):
    """What a run was asked to do; written to config.json so `resume` can finish it."""

    run_id: str
    source_db: str = Field(description="Absolute path of the source database.")
    dialogues: int = Field(ge=1)
    tasks_per_dialogue: int = Field(ge=1)
    seed: int
    concurrency: int = Field(ge=1)
    workers: int = Field(1, ge=1, description="Processes the dialogues are spread over.")
    pipeline: Literal["user", "task"] = Field("user", description="User-oriented dialogues, or task-oriented questions.")
    prelude: list[dict[str, object]] = Field(default_factory=list,
                                             description="A conversation every dialogue continues (OpenAI messages).")
    settings: dict[str, object] = Field(default_factory=dict, description="Settings, without the API key.")

    def dialogue_id(self, i: int) -> str:
        return f"{self.run_id}-d{i:04d}"

    def dialogue_seed(self, i: int) -> int:
        return (self.seed * 1_000_003 + i) % 2**31
