"""The command-line options that choose the LLM: backend, models per role, endpoints, structured
outputs and reasoning traces. Shared by every command that runs models."""

from __future__ import annotations

import argparse
from typing import Any

LLM_OPTIONS = ("backend", "model", "base_url", "model_for", "structured", "reasoning")


def add_llm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", help="offline | openai (default: openai when a base URL is set, else offline)")
    p.add_argument("--model", help="model name (or OPENAI_MODEL)")
    p.add_argument("--base-url", action="append",
                   help="OpenAI-compatible endpoint (or OPENAI_BASE_URL); repeat it to spread requests over "
                        "several servers of the same model")
    p.add_argument("--model-for", action="append", metavar="ROLE=MODEL[@BASE_URL]",
                   help="run one role on its own model (and endpoint): assistant, user, judge or generator; "
                        "repeatable")
    p.add_argument("--structured", choices=["auto", "json_schema", "json_object", "prompt"],
                   help="how JSON roles ask the server for JSON (default auto: json_schema, else json_object "
                        "with the schema, else the prompt alone; found once per endpoint)")
    p.add_argument("--reasoning", choices=["keep", "drop"],
                   help="reasoning the server returns beside an assistant reply: keep it on that message in the "
                        "dataset as reasoning_content (default), or drop it")


def llm_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the options give (only those given, so the environment fills the rest)."""
    given: dict[str, Any] = {}
    for name in LLM_OPTIONS:
        value = getattr(args, name, None)
        if value is not None:
            given[name] = value
    urls = given.pop("base_url", None)
    if urls:
        given["base_url"], given["extra_base_urls"] = urls[0], urls[1:]
    return given


def llm_options_given(args: argparse.Namespace) -> bool:
    return any(getattr(args, name, None) is not None for name in LLM_OPTIONS)
