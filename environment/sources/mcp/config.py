"""The MCP servers file: the `mcpServers` format MCP clients share, plus our sandbox declaration.

    {"mcpServers": {
        "library": {"command": "python", "args": ["server.py", "--state", "{sandbox}/library.json"],
                    "env": {"API_KEY": "${LIBRARY_KEY}"}, "sandbox": {"copy": ["library.json"]}},
        "search":  {"url": "https://example.org/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"},
                    "shared": true}}}

Relative paths (sandbox copies, `cwd`, a command with a slash) are taken from the file's own folder;
`cwd` defaults to it. `{sandbox}` in `args`, `env` and `cwd` is the dialogue's private folder, which
holds a fresh copy of each declared path under its own name. `${VAR}` and `${VAR:-default}` in
`args`, `env`, `headers` and `url` are read from the environment when a server starts, so secrets
stay out of the file and out of the run folder. `python` as a command is the interpreter running us.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from environment.errors import InputError, read_json_input

SANDBOX = "{sandbox}"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
MASK = "***"


def variables(text: str) -> list[str]:
    """The environment variables a value refers to without a default (those that must be set)."""
    return [m.group(1) for m in _VARIABLE.finditer(text) if m.group(2) is None]


def expand(text: str, sandbox: str | None = None) -> str:
    """A value with `${VAR}` read from the environment and `{sandbox}` filled in."""
    def value(m: re.Match[str]) -> str:
        found = os.environ.get(m.group(1))
        if found is None and m.group(2) is None:
            raise InputError(f"environment variable {m.group(1)} is not set (an MCP server's config refers to it)")
        return found if found is not None else m.group(2)
    text = _VARIABLE.sub(value, text)
    return text.replace(SANDBOX, sandbox) if sandbox is not None else text


def _recordable(value: str) -> str:
    """A value as it may be written down: kept when it refers to the environment or the sandbox (the secret,
    if any, is in the variable), masked when it is a literal (it may be a key)."""
    return value if _VARIABLE.search(value) or SANDBOX in value else MASK


class SandboxDeclaration(BaseModel):
    """The files or folders holding a server's state: each dialogue gets fresh copies of them."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    paths: list[str] = Field(default_factory=list, alias="copy",
                             description="Files or folders (relative to the servers file) copied into {sandbox}.")


class McpServerConfig(BaseModel):
    """One server: a command started over stdio, or a URL (streamable HTTP or SSE)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["stdio", "http", "streamable_http", "sse"] | None = Field(
        None, description="Transport; by default stdio with a command, streamable HTTP with a url.")
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    sandbox: SandboxDeclaration = Field(default_factory=SandboxDeclaration)
    shared: bool = Field(False, description="Opened once per run for every dialogue (stateless or remote servers).")
    disabled: bool = Field(False, description="Left out, as other MCP clients do.")
    description: str = ""

    @model_validator(mode="after")
    def _one_transport(self) -> "McpServerConfig":
        if self.command is None and self.url is None:
            raise ValueError("needs a command (a stdio server) or a url (a remote one)")
        if self.command is not None and self.url is not None:
            raise ValueError("has both a command and a url; give one")
        if self.command is not None and not self.command.strip():
            raise ValueError("command is empty")
        if self.type is not None and (self.type == "stdio") != (self.command is not None):
            raise ValueError(f"type {self.type!r} does not fit a server given by a {'command' if self.command else 'url'}")
        if self.url is not None and (self.sandbox.paths or SANDBOX in self.url):
            raise ValueError("a remote server has no sandbox: its state is not ours to copy")
        uses_sandbox = any(SANDBOX in v for v in [*self.args, *self.env.values(), self.cwd or ""])
        if self.shared and (self.sandbox.paths or uses_sandbox):
            raise ValueError("a shared server is opened once per run and has no per-dialogue sandbox")
        return self

    @property
    def transport(self) -> Literal["stdio", "streamable_http", "sse"]:
        if self.command is not None:
            return "stdio"
        return "sse" if self.type == "sse" else "streamable_http"

    def recordable(self) -> dict[str, Any]:
        """This server as it may be written to a run folder: env and header literals masked."""
        out = self.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        for key in ("env", "headers"):
            if key in out:
                out[key] = {k: _recordable(v) for k, v in out[key].items()}
        return out


class McpConfig(BaseModel):
    """Every server of a servers file, and the folder its relative paths are taken from."""

    servers: dict[str, McpServerConfig] = Field(alias="mcpServers")
    base_dir: str = Field(description="Absolute folder of the servers file.")
    source: str = Field("", description="The servers file, as the user named it.")

    model_config = ConfigDict(populate_by_name=True)

    def recordable(self) -> dict[str, Any]:
        """The config as it may be recorded in a run folder: secrets never written, `${VAR}` references kept."""
        return {"mcpServers": {name: server.recordable() for name, server in self.servers.items()}}

    def path(self, relative: str) -> Path:
        p = Path(relative).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def command_of(self, server: McpServerConfig) -> str:
        """The executable to start: `python` is our own interpreter, a path with a slash is taken from the file's
        folder, any other name is found on PATH."""
        command = expand(server.command or "")
        if command in ("python", "python3"):
            return sys.executable
        if "/" in command:
            return str(self.path(command))
        return shutil.which(command) or command

    def cwd_of(self, server: McpServerConfig, sandbox: str | None) -> str:
        return str(self.path(expand(server.cwd, sandbox))) if server.cwd else self.base_dir


def _problems(name: str, server: McpServerConfig, config: McpConfig) -> list[str]:
    found = []
    if not _SERVER_NAME.match(name):
        found.append(f"server name {name!r} must be letters, digits, '_', '.' or '-' (at most 40)")
    if server.command is not None:
        command = config.command_of(server)
        if not (Path(command).is_file() and os.access(command, os.X_OK)):
            found.append(f"server {name!r}: command {server.command!r} not found (install it or give its path)")
    for relative in server.sandbox.paths:
        if not config.path(relative).exists():
            found.append(f"server {name!r}: sandbox path {relative!r} does not exist in {config.base_dir}")
    names = [Path(p).name for p in server.sandbox.paths]
    if len(set(names)) != len(names):
        found.append(f"server {name!r}: two sandbox paths share a name; each is copied under its own name")
    for value in [*server.args, *server.env.values(), *server.headers.values(), server.url or "", server.cwd or ""]:
        for variable in variables(value):
            if variable not in os.environ:
                found.append(f"server {name!r}: environment variable {variable} is not set")
    return found


def parse_mcp_config(data: Any, base_dir: str | Path, source: str = "") -> McpConfig:
    """A servers mapping checked in full, or an InputError naming the first problem in one line."""
    where = source or "MCP servers config"
    if not isinstance(data, dict) or not isinstance(data.get("mcpServers"), dict):
        raise InputError(f"{where}: expected an object with an \"mcpServers\" object of servers")
    try:
        config = McpConfig(mcpServers=data["mcpServers"], base_dir=str(Path(base_dir).resolve()), source=source)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"] if p != "mcpServers")
        message = first["msg"].removeprefix("Value error, ")
        raise InputError(f"{where}: mcpServers.{loc}: {message}") from None
    config.servers = {name: s for name, s in config.servers.items() if not s.disabled}
    if not config.servers:
        raise InputError(f"{where}: no MCP server is declared (or every one is disabled)")
    for name, server in config.servers.items():
        problems = _problems(name, server, config)
        if problems:
            raise InputError(f"{where}: {problems[0]}")
    return config


def load_mcp_config(path: str | Path) -> McpConfig:
    """Read and check a servers file (see the module's docstring)."""
    return parse_mcp_config(read_json_input(path, "MCP servers file"), Path(path).parent, str(path))
