"""Toolset synthesis: the backend proposes tools from a source's schema; each is checked by running it on a
scratch sandbox of the source; one repair; completion. A source that offers its own tools needs none."""

from __future__ import annotations

import asyncio
import logging

from pydantic import ValidationError

from backends.protocols import Backend, ToolProposalRequest, ToolRepairRequest
from environment.sources.base import ToolSource
from state.config import Settings
from state.dialogue import Usage
from state.schema import DatabaseSchema
from state.tools import DroppedTool, Tool, Toolset

log = logging.getLogger(__name__)


def _parse(proposal: dict[str, object], kind: str) -> tuple[Tool | None, str]:
    try:
        return Tool.model_validate({"origin": "model", **proposal, "source": kind}), ""
    except ValidationError as exc:
        first = exc.errors()[0]
        return None, f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


async def synthesize_toolset(source: ToolSource, database: DatabaseSchema, backend: Backend,
                             settings: Settings) -> tuple[Toolset, Usage]:
    """Propose, check, repair once, and complete with schema-derived tools when too few survive."""
    proposals, usage = await backend.propose_tools(ToolProposalRequest(database=database, max_tools=settings.max_tools))
    sandbox = await asyncio.to_thread(source.open, 0)
    try:
        accepted: list[Tool] = []
        dropped: list[DroppedTool] = []
        repaired = 0
        names: set[str] = set()

        def check(tool: Tool) -> str | None:
            if tool.name in names:
                return f"duplicate tool name {tool.name!r}"
            return source.check_tool(tool, sandbox)

        for proposal in proposals:
            tool, error = _parse(proposal, source.kind)
            if tool is not None:
                error = await asyncio.to_thread(check, tool) or ""
            if error:
                fixed, more = await backend.repair_tool(ToolRepairRequest(database=database, tool=proposal, error=error))
                usage = usage + more
                if fixed is not None:
                    tool, error = _parse(fixed, source.kind)
                    if tool is not None:
                        error = await asyncio.to_thread(check, tool) or ""
                    repaired += 0 if error else 1
            name = str(proposal.get("name", "?"))
            if error or tool is None:
                dropped.append(DroppedTool(name=name, reason=error))
                continue
            accepted.append(tool)
            names.add(tool.name)

        toolset = Toolset(tools=accepted, dropped=dropped, proposed=len(proposals), repaired=repaired)
        reads = sum(t.mode == "read" for t in accepted)
        writes = sum(t.mode == "write" for t in accepted)
        if len(accepted) < settings.min_tools or not reads or not writes:
            note = (f"only {len(accepted)} of {len(proposals)} proposed tools passed validation "
                    f"({reads} reads, {writes} writes); completing the toolset with schema-derived tools")
            log.warning(note)
            toolset.notes.append(note)
            toolset.completed_from_schema = True
            for tool in source.derive_tools(database, settings.max_tools):
                if len(toolset.tools) >= max(settings.max_tools, settings.min_tools):
                    break
                if tool.name in names:
                    continue
                if await asyncio.to_thread(check, tool) is None:
                    toolset.tools.append(tool)
                    names.add(tool.name)
        return toolset, usage
    finally:
        sandbox.close()


async def toolset_for(source: ToolSource, database: DatabaseSchema | None, backend: Backend,
                      settings: Settings, offered: list[Tool] | None = None) -> tuple[Toolset, Usage]:
    """The tools a source offers itself (`offered`, when its catalog was read already), and a toolset synthesized
    from its schema when it has one (a database with MCP servers beside it: both)."""
    if offered is None:
        offered = (await asyncio.to_thread(source.catalog)).tools
    if database is None:
        return Toolset(tools=offered, proposed=len(offered)), Usage()
    toolset, usage = await synthesize_toolset(source, database, backend, settings)
    names = {t.name for t in toolset.tools}
    toolset.tools.extend(t for t in offered if t.name not in names)
    return toolset, usage
