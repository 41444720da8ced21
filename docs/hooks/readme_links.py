"""MkDocs hook: every relative link of the README resolves, so `mkdocs build --strict` checks the entry page too.

The README lives outside the site, so MkDocs never validates it. After the build, each of its relative links
must name a file of the checkout, and a link into docs/ with an anchor must name a heading the built page has.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.readme_links")  # under "mkdocs": a warning fails a strict build

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def readme_links(readme: Path) -> list[str]:
    """The README's link targets, outside code blocks and inline code."""
    text = _FENCE.sub("", readme.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)
    return _LINK.findall(text)


def problems(root: Path, site_dir: Path) -> list[str]:
    """Why each relative link of root/README.md does not resolve (empty: all do)."""
    found = []
    for target in readme_links(root / "README.md"):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL, or an anchor of the README itself (GitHub's own)
        path, _, anchor = target.partition("#")
        file = (root / path).resolve()
        if not file.exists():
            found.append(f"README.md links to '{target}', but {path} does not exist")
            continue
        if anchor and file.suffix == ".md" and file.is_relative_to(root / "docs"):
            page = file.relative_to(root / "docs").with_suffix("")
            built = site_dir / ("" if page.name == "index" else page) / "index.html"
            if built.exists() and f'id="{anchor}"' not in built.read_text(encoding="utf-8"):
                found.append(f"README.md links to '{target}', but {path} has no heading '#{anchor}'")
    return found


def on_post_build(config) -> None:
    root = Path(config["config_file_path"]).resolve().parent
    for problem in problems(root, Path(config["site_dir"])):
        log.warning(problem)
