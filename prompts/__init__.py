"""Our prompts, one per role, versioned and loaded by name.

Each `<role>.md` starts with a `version: N` line; `$name` placeholders are filled by `render`.
"""

from __future__ import annotations

from pathlib import Path
from string import Template

from pydantic import BaseModel

PROMPT_DIR = Path(__file__).parent


class Prompt(BaseModel):
    name: str
    version: int
    text: str

    def render(self, **values: object) -> str:
        return Template(self.text).substitute({k: str(v) for k, v in values.items()})


def _read(path: Path) -> Prompt:
    head, _, body = path.read_text(encoding="utf-8").partition("\n")
    if not head.startswith("version:"):
        raise ValueError(f"prompt {path} must start with a 'version: N' line")
    return Prompt(name=path.stem, version=int(head.split(":", 1)[1]), text=body.lstrip("\n"))


# Read once at import: nodes run on an event loop, where file reads would block it.
_PROMPTS = {path.stem: _read(path) for path in sorted(PROMPT_DIR.glob("*.md"))}


def load_prompt(name: str) -> Prompt:
    try:
        return _PROMPTS[name]
    except KeyError:
        raise KeyError(f"no prompt named {name!r} in {PROMPT_DIR}") from None
