"""Which of our roles a request to a model plays, so a fake can answer each role its own way.

A request in json_schema mode names its reply schema after the role; in every mode the role's prompt opens
the request's first message. The openings are read from prompts/ itself, so rewording a prompt breaks no fake.
"""

from __future__ import annotations

from typing import Any

from prompts import PROMPT_DIR, load_prompt
from tests.stub_server import content_text


def _opening(role: str) -> str:
    """The prompt's first line up to its first placeholder: the words every request of the role starts with."""
    return load_prompt(role).text.strip().splitlines()[0].split("$", 1)[0].strip()


OPENINGS = {path.stem: _opening(path.stem) for path in sorted(PROMPT_DIR.glob("*.md"))}


def role_of_text(first_message: str) -> str | None:
    """The role whose prompt the first message of a request starts with (the longest opening that fits)."""
    text = first_message.lstrip()
    fitting = [role for role, opening in OPENINGS.items() if opening and text.startswith(opening)]
    return max(fitting, key=lambda role: len(OPENINGS[role]), default=None)


def role_of_request(request: dict[str, Any]) -> str | None:
    """The role of a chat-completions request: its reply schema's name, else its first message's prompt."""
    named = ((request.get("response_format") or {}).get("json_schema") or {}).get("name")
    if named in OPENINGS:
        return named
    messages = request.get("messages") or []
    return role_of_text(content_text(messages[0].get("content"))) if messages else None


def request_text(request: dict[str, Any]) -> str:
    """Every message of a request as one text."""
    return "\n".join(content_text(m.get("content")) for m in request.get("messages") or [])
