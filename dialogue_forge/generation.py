"""`generate` and `resume`: a request checked and turned into the run's config, the run made by runner/, and
the finished run returned (or the typed exception of what went wrong)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from dialogue_forge.errors import forge_errors
from dialogue_forge.requests import GenerateRequest, ResumeRequest
from dialogue_forge.run import NoValidDialogues, Run, finish_run
from dialogue_forge.sync import quiet, run_sync
from environment.errors import InputError, read_json_input

FolderNamed = Callable[[Path], None]


def _builder(pipeline: str) -> Callable[[], Any]:
    """The graph builder of a pipeline (imported on use: the graphs bring LangGraph)."""
    if pipeline == "task":
        from graphs.task_oriented import build_task_oriented_graph

        return build_task_oriented_graph
    from graphs.dialogue import build_dialogue_graph

    return build_dialogue_graph


def pipeline_of(run_dir: Path) -> Callable[[], Any]:
    """The graph builder a dialogue run folder was made with."""
    from runner.layout import dialogue_run_config

    return _builder(dialogue_run_config(run_dir, "this command works on dialogue runs").get("pipeline", "user"))


def read_conversation(path: Path) -> list[dict]:
    """A JSON file of OpenAI chat messages (a list, or {"messages": [...]}) a dialogue continues."""
    data = read_json_input(path, "conversation")
    if isinstance(data, dict) and isinstance(data.get("messages"), list):
        data = data["messages"]
    if not isinstance(data, list) or not data or not all(isinstance(m, dict) for m in data):
        raise InputError(f"conversation {path} must be a non-empty JSON list of chat messages "
                         f"(or {{'messages': [...]}})")
    _check_prelude(data, str(path))
    return data


def _check_prelude(messages: list[dict], what: str) -> None:
    from state.dialogue import DialogueInput

    try:
        DialogueInput(prelude=messages)
    except ValidationError as exc:
        raise InputError(f"conversation {what}: {exc.errors()[0]['msg']}") from None


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise InputError(f"--{name} must be at least 1 (got {value})")


def _outcome(run: Run) -> Run:
    """A run that produced no valid dialogue failed, whatever the reasons."""
    if run.statistics.samples == 0 and run.statistics.rejected:
        raise NoValidDialogues(run)
    return run


def _finisher(console: Console) -> Callable[[Any], Run]:
    def finish(folder: Any) -> Run:
        return Run(path=folder.path, statistics=finish_run(folder, console))
    return finish


async def _agenerate(request: GenerateRequest, console: Console, on_folder: FolderNamed | None) -> Run:
    from environment.sources.registry import label_of, recorded, source_names, source_ref
    from runner.layout import LLM_CACHE, load_toolset
    from runner.lifecycle import generate as generate_run
    from runner.targeting import read_targeting, targeting_table
    from runner.workers import choose_workers
    from state.config import RunConfig, RunSource, Settings

    for name in ("dialogues", "tasks_per_dialogue", "concurrency"):
        _positive(name.replace("_", "-"), getattr(request, name))
    if request.dialogues_per_source is not None:
        _positive("dialogues-per-db", request.dialogues_per_source)
    settings = request.settings if request.settings is not None else Settings()
    if request.target is not None:
        targeting = read_targeting(request.target)
        settings = settings.model_copy(update={"targeting": targeting})
        console.print(targeting_table(targeting))
    from runner.lifecycle import check_something_to_work_on

    check_something_to_work_on([*request.sources, *([request.mcp] if request.mcp else [])], request.toolset)
    named = [str(s) for s in request.sources] + ([f"mcp://{request.mcp}"] if request.mcp else [])
    refs = recorded([source_ref(name) for name in source_names(named)])
    databases = [[ref] for ref in refs]
    if request.sources and request.mcp:  # each dialogue over a source calls the MCP servers' tools too
        databases = [[d, refs[-1]] for d in refs[:-1]]
    db = databases[0] if len(databases) == 1 else None
    several = Path(named[0].rstrip("/*")).name or "databases" if named else ""
    stem = label_of(db) if db else several or request.toolset.resolve().parent.name
    from runner.run_folder import RUNS, run_name

    run_id = run_name(stem, request.pipeline, seed=request.seed)
    out = request.out or RUNS / run_id
    if on_folder is not None:
        on_folder(out)
    if request.cache:
        settings = settings.model_copy(update={"llm_cache": str(out.resolve() / LLM_CACHE)})
    toolset = load_toolset(request.toolset) if request.toolset else None
    if isinstance(request.conversation, list):
        _check_prelude(request.conversation, "given")
    prelude = read_conversation(request.conversation) if isinstance(request.conversation, Path) \
        else list(request.conversation or [])
    workers, auto = choose_workers(str(request.workers), settings, request.concurrency)
    config = RunConfig(run_id=out.name, databases=[RunSource(sources=db)] if db else [],
                       dialogues=request.dialogues, tasks_per_dialogue=request.tasks_per_dialogue, seed=request.seed,
                       concurrency=request.concurrency, workers=workers.workers, prelude=prelude,
                       pipeline=request.pipeline, settings=settings.public())
    if (workers.workers > 1 or settings.executor == "ray") and settings.backend_kind == "custom":
        raise InputError(f"--workers and --executor ray need the offline or openai backend, not {settings.backend!r}")
    if workers.workers > 1 and settings.executor == "ray":
        raise InputError("--workers is for the local executor; with --executor ray every CPU of the cluster runs tasks")
    console.print(workers.line(auto))
    run = await generate_run(_builder(request.pipeline), config, settings, out, console, _finisher(console),
                             toolset, databases, request.dialogues_per_source)
    return _outcome(run)


async def agenerate(request: GenerateRequest, *, console: Console | None = None,
                    on_folder: FolderNamed | None = None) -> Run:
    """A new run, on the caller's event loop: check the request, make each source's toolset once, run every
    dialogue, write the statistics. Progress and tables go to `console` only where one is given; `on_folder` is
    called with the run folder as soon as it is named (a caller cut off knows what to resume).

    Raises `InvalidInput` (bad request), `NoValidDialogues` (the run produced none), `RunFailed`,
    `ModelServerError`."""
    with forge_errors():
        return await _agenerate(request, quiet(console), on_folder)


def generate(request: GenerateRequest, *, console: Console | None = None,
             on_folder: FolderNamed | None = None) -> Run:
    """`agenerate` on an event loop of its own: a new run, returned finished."""
    return run_sync(agenerate(request, console=console, on_folder=on_folder))


async def aresume(request: ResumeRequest, *, console: Console | None = None) -> Run:
    """An interrupted run finished on the caller's event loop: dialogues continued from their last checkpoint,
    missing ones started (on the run's executor unless the request names one). Raises as `agenerate` does."""
    from runner.lifecycle import resume as resume_run

    console = quiet(console)
    executor = {k: v for k, v in {"executor": request.executor, "ray_address": request.ray_address,
                                  "keep_sandboxes": request.keep_sandboxes}.items() if v is not None}
    with forge_errors():
        run = await resume_run(pipeline_of(request.run), request.run, request.settings, console,
                               _finisher(console), executor)
        return _outcome(run)


def resume(request: ResumeRequest, *, console: Console | None = None) -> Run:
    """`aresume` on an event loop of its own."""
    return run_sync(aresume(request, console=console))
