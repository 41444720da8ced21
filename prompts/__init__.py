"""Our prompts, one per role, versioned and loaded by name.

Each `<role>.md` starts with a `version: N` line; `$name` placeholders are filled by `render`.
"""

from __future__ import annotations

from functools import lru_cache
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


@lru_cache(maxsize=None)
def load_prompt(name: str) -> Prompt:
    path = PROMPT_DIR / f"{name}.md"
    head, _, body = path.read_text(encoding="utf-8").partition("\n")
    if not head.startswith("version:"):
        raise ValueError(f"prompt {path} must start with a 'version: N' line")
    return Prompt(name=name, version=int(head.split(":", 1)[1]), text=body.lstrip("\n"))
