"""Run settings: one object, described fields, environment fallbacks.

Passed to every graph as its runtime context. What a dialogue needs to be replayed (seed, database,
tasks) lives in the graph state instead.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Self

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from state.postgres_uri import is_postgres_uri, without_password
from state.sources import SourceRef, joined_name, read_joined
from state.targeting import Targeting


LLMRole = Literal["assistant", "user", "judge", "generator"]
LLM_ROLES: tuple[str, ...] = ("assistant", "user", "judge", "generator")


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
    extra_base_urls: list[str] = Field(
        default_factory=list, description="More endpoints serving the same model: requests spread over all of them.")
    model_for: dict[LLMRole, str] = Field(
        default_factory=dict, description="Per role (assistant, user, judge, generator): 'MODEL' or "
        "'MODEL@BASE_URL', overriding model and base URL for that role. Also given as ['ROLE=MODEL[@BASE_URL]', ...].")
    structured: Literal["auto", "json_schema", "json_object", "prompt"] = Field(
        "auto", description="How JSON roles ask for JSON: response_format json_schema, json_object with the schema "
        "(llama.cpp), or the prompt alone. auto: the first a server accepts, found once per endpoint.")
    reasoning: Literal["keep", "drop"] = Field(
        "keep", description="Reasoning the server returns beside an assistant reply: kept on that message in the "
        "dataset as reasoning_content, or dropped.")
    max_in_flight: int = Field(8, ge=1, description="Most requests in flight on one endpoint; the adaptive limit "
                               "(lowered on 429, 503 and timeouts) never goes above it.")
    request_timeout: float = Field(600.0, description="Seconds before an LLM request times out (a busy or CPU "
                                   "server queues requests: allow minutes).")
    http_retries: int = Field(4, description="Retries with backoff on 429, 5xx, timeouts and connection errors.")
    endpoint_rest: float = Field(30.0, description="Seconds an endpoint that keeps failing is left alone while "
                                 "the others carry on.")
    max_tokens: int | None = Field(None, ge=1, description="Most tokens in one reply; none: the server's limit "
                                   "(small models can ramble until their context is full).")
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
    mcp_call_timeout: float = Field(60.0, gt=0, description="Seconds an MCP tool call may take; past it the server "
                                    "counts as hung and its dialogue ends as rejected with the reason.")
    mcp_start_timeout: float = Field(30.0, gt=0, description="Seconds an MCP server may take to start and answer "
                                     "initialize; past it the dialogue ends as rejected.")
    mcp_max_servers: int = Field(16, ge=1, description="Most per-dialogue MCP server processes running at once in "
                                 "one process (each dialogue starts its own); dialogues wait for a free slot.")
    llm_cache: str | None = Field(None, description="Path of a SQLite cache of LLM responses: replays cost no calls.")
    checkpoints: Literal["all", "final"] = Field(
        "all", description="'all' keeps every step of every dialogue; 'final' keeps only the last state of a "
        "finished dialogue once its line is written (an unfinished one keeps every step, so it still resumes).")
    executor: Literal["local", "ray"] = Field(
        "local", description="Where dialogues run: 'local' (this machine: an event loop, or --workers processes) "
        "or 'ray' (Ray tasks, each writing its own shard of the run folder).")
    ray_address: str | None = Field(None, description="Head of the Ray cluster (host:port) for the ray executor; "
                                    "empty: a local Ray of the run's own.")
    source_kinds: list[str] = Field(
        default_factory=list, description="Modules to import before sources are named, each registering a kind of "
        "tool source of its own (environment.sources.registry.register_source_kind); FORGE_SOURCE_KINDS='[\"m\"]'.")
    keep_sandboxes: bool = Field(
        False, description="Keep each dialogue's sandbox when it ends, and the run's copy of each source, for "
        "inspection (Postgres: each source's template and a database per dialogue, named "
        "forge_<run tag>_<source tag>_…); "
        "otherwise they are dropped. FORGE_KEEP_SANDBOXES=1.")
    variants: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=dict, description="Share of tasks made as each hard case (missing-info, missing-tool, "
        "out-of-scope, crowded); the rest are standard. Given as 'missing-info=0.2,crowded=0.1' (or JSON). Empty: off.")
    crowd: int = Field(50, ge=1, description="Decoy tools a crowded dialogue's assistant is offered beside its "
                       "toolset (fewer when the database yields fewer).")
    personas: int = Field(0, ge=0, description="User personas in each source's pool (made once per run from the "
                          "database's domain, one drawn per dialogue); 0: the plain simulated user.")
    sandbox_file_above_mb: float = Field(
        32.0, ge=0, description="A SQLite source larger than this many MB gets file sandboxes (a copy of the file "
        "in sandbox_dir, a reflink where the file system offers one) instead of in-memory copies, so memory does not "
        "grow with database size times dialogues in flight. FORGE_SANDBOX_FILE_ABOVE_MB.")
    read_memo_entries: int = Field(
        1024, ge=0, description="Results of read tools kept per source (a SQLite file, a Postgres run's template), "
        "so a read made again on the same rows (a plan check's read that the dialogue repeats, or any dialogue's at "
        "the same state) is answered without running its statement again; 0: every read runs. "
        "FORGE_READ_MEMO_ENTRIES.")
    postgres_file_copy_above_mb: float = Field(
        64.0, ge=0, description="A Postgres run's template larger than this many MB is cloned per dialogue with "
        "CREATE DATABASE … STRATEGY FILE_COPY (a checkpoint, then the files copied), a smaller one with WAL_LOG "
        "(Postgres 15's default: blocks copied through the write-ahead log); docs/performance.md has the figures. "
        "FORGE_POSTGRES_FILE_COPY_ABOVE_MB.")
    sandbox_dir: str = Field(
        "", description="Where file sandboxes go, one folder per run (removed when it ends, and by `resume` after "
        "a kill); empty: the system's temporary folder. FORGE_SANDBOX_DIR.")
    checkpointer: str = Field(
        "", description="Where a dialogue run keeps its checkpoints and store: empty for the run folder's "
        "checkpoints.sqlite, or a libpq URI (postgresql://USER@HOST:PORT/DATABASE) for LangGraph's Postgres saver "
        "and store, shared by workers on several machines. Recorded without its password (libpq reads it from "
        "PGPASSWORD or ~/.pgpass).")
    targeting: Targeting | None = Field(
        None, description="Weights that lean task making toward the slices an evaluation's model failed (generate "
        "--target EVAL_DIR), with the figures they come from; none: tasks as usual.")

    @field_validator("checkpointer")
    @classmethod
    def _checkpointer_kind(cls, value: str) -> str:
        if value and not is_postgres_uri(value):
            scheme = value.split("://", 1)[0] + "://" if "://" in value else "a path"  # the rest may hold a password
            raise ValueError(f"{scheme} is not a postgresql:// URI (leave it empty for the run folder's "
                             f"checkpoints.sqlite)")
        return value

    @field_validator("variants", mode="before")
    @classmethod
    def _variant_mix(cls, value: object) -> object:
        """'NAME=SHARE,...' (the command line's form) into the mapping, each name a hard case, shares summing to 1
        at most."""
        if isinstance(value, str) and value.strip().startswith("{"):
            value = json.loads(value)
        if isinstance(value, str):
            mix: dict[str, float] = {}
            for item in filter(None, (part.strip() for part in value.split(","))):
                name, sep, share = item.partition("=")
                try:
                    mix[name.strip()] = float(share)
                except ValueError:
                    raise ValueError(f"{item!r}: expected NAME=SHARE, e.g. missing-info=0.2") from None
                if not sep:
                    raise ValueError(f"{item!r}: expected NAME=SHARE, e.g. missing-info=0.2")
            value = mix
        if isinstance(value, dict):
            known = ("missing-info", "missing-tool", "out-of-scope", "crowded")
            for name, share in value.items():
                if name not in known:
                    raise ValueError(f"unknown variant {name!r} (known: {', '.join(known)})")
                if not 0 <= float(share) <= 1:
                    raise ValueError(f"variant {name}: share {share} is not between 0 and 1")
            if sum(float(v) for v in value.values()) > 1 + 1e-9:
                raise ValueError("variant shares add up to more than 1")
        return value

    @field_validator("model_for", mode="before")
    @classmethod
    def _role_assignments(cls, value: object) -> object:
        """'ROLE=MODEL[@BASE_URL]' strings (the command line's form) into the mapping."""
        if not isinstance(value, (list, tuple)):
            return value
        mapping: dict[str, str] = {}
        for item in value:
            role, sep, target = str(item).partition("=")
            if not sep or not target.strip() or target.strip().startswith("@"):
                raise ValueError(f"{item!r}: expected ROLE=MODEL or ROLE=MODEL@BASE_URL "
                                 f"(roles: {', '.join(LLM_ROLES)})")
            mapping[role.strip()] = target.strip()
        return mapping

    def role_target(self, role: str) -> tuple[str, list[str | None]]:
        """(model, endpoints) of a role: its --model-for override, else --model and every --base-url."""
        target = self.model_for.get(role)  # type: ignore[call-overload]
        if target is None:
            return self.model, [self.base_url, *self.extra_base_urls]
        model, sep, url = target.rpartition("@") if "@http" in target else (target, "", "")
        return (model, [url]) if sep else (target, [self.base_url, *self.extra_base_urls])

    @model_validator(mode="after")
    def _default_backend(self) -> "Settings":
        if not self.backend:
            self.backend = "openai" if self.base_url or self.model_for else "offline"
        return self

    @property
    def backend_kind(self) -> Literal["offline", "openai", "custom"]:
        return self.backend if self.backend in ("offline", "openai") else "custom"  # type: ignore[return-value]

    @property
    def uses_model(self) -> bool:
        """Whether a model writes the dialogues (any backend but the offline one): runs record its name."""
        return self.backend_kind != "offline"

    @property
    def uses_server(self) -> bool:
        """Whether the backend talks to OpenAI-compatible servers, which a run checks it can reach first."""
        return self.backend_kind == "openai"

    @classmethod
    def of_run(cls, recorded: dict[str, object], given: Self | None = None) -> Self:
        """The settings a run goes on with (resume, fork, a later step): the given ones (else the recorded ones),
        with what the run keeps and where it keeps it taken from the record, whichever backend or command
        continues it."""
        recorded = {k: v for k, v in recorded.items() if v is not None}
        # a run recorded before the checkpointer was a choice keeps its checkpoints in its folder
        kept: dict[str, object] = {"checkpointer": recorded.get("checkpointer") or ""}
        if "checkpoints" in recorded:
            kept["checkpoints"] = recorded["checkpoints"]
        if recorded.get("targeting"):  # a targeted run stays aimed as it was, whichever settings go on with it
            kept["targeting"] = Targeting.model_validate(recorded["targeting"])
        return cls(**{**recorded, **kept}) if given is None else given.model_copy(update=kept)

    def public(self) -> dict[str, object]:
        """The settings as recorded in a run folder: everything but the key and the checkpointer's password."""
        return {**self.model_dump(exclude={"api_key"}), "checkpointer": without_password(self.checkpointer)}


class RunSource(BaseModel):
    """What one share of a run's dialogues works on: its sources (a database, MCP servers, both) and the
    toolset made for them."""

    sources: list[SourceRef] = Field(default_factory=list,
                                     description="The sources, as the run names them; empty when every tool needs "
                                                 "no named source (simulated tools).")
    toolset: str = Field("toolset.json", description="Its toolset file, relative to the run folder.")

    @model_validator(mode="before")
    @classmethod
    def _old_form(cls, data: Any) -> Any:
        """Runs recorded before references named their sources by one joined string (`path`)."""
        if isinstance(data, dict) and "path" in data and "sources" not in data:
            data = {**{k: v for k, v in data.items() if k != "path"}, "sources": read_joined(data["path"] or "")}
        return data

    @property
    def label(self) -> str:
        return joined_name(self.sources)


class RunConfig(BaseModel):
    """What a run was asked to do; written to config.json so `resume` can finish it."""

    run_id: str
    databases: list[RunSource] = Field(
        default_factory=list, description="Every usable source of the run with its toolset; dialogue i runs on "
                                          "entry i modulo their number (none: simulated tools only).")
    dialogues: int = Field(ge=1)
    tasks_per_dialogue: int = Field(ge=1)
    seed: int
    concurrency: int = Field(ge=1)
    workers: int = Field(1, ge=1, description="Processes the dialogues are spread over.")
    pipeline: Literal["user", "task"] = Field("user", description="User-oriented dialogues, or task-oriented questions.")
    prelude: list[dict[str, object]] = Field(default_factory=list,
                                             description="A conversation every dialogue continues (OpenAI messages).")
    settings: dict[str, object] = Field(default_factory=dict, description="Settings, without the API key.")
    @model_validator(mode="before")
    @classmethod
    def _one_joined_source(cls, data: Any) -> Any:
        """Runs recorded before references kept their one source in `source_db` (joined by ' + ')."""
        if isinstance(data, dict) and "source_db" in data:
            joined = data["source_db"]
            data = {k: v for k, v in data.items() if k != "source_db"}
            if not data.get("databases") and joined:
                data["databases"] = [{"path": joined}]
        return data

    def sources(self) -> list[RunSource]:
        return self.databases or [RunSource()]

    def source_of(self, i: int) -> RunSource:
        """Dialogues go round the sources in turn, so each gets an even share."""
        sources = self.sources()
        return sources[i % len(sources)]

    def toolset_file_of(self, sources: list[SourceRef]) -> str:
        names = [s.name for s in sources]
        return next((s.toolset for s in self.sources() if [r.name for r in s.sources] == names),
                    self.sources()[0].toolset)

    def dialogue_id(self, i: int) -> str:
        return f"{self.run_id}-d{i:04d}"

    def dialogue_seed(self, i: int) -> int:
        return (self.seed * 1_000_003 + i) % 2**31
