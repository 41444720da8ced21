"""Run the tool-preparation graph into a run folder: toolset.json and a report of every stage."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from langgraph.graph import StateGraph
from rich.console import Console
from rich.table import Table

from environment.seeds import read_seed_tools
from runner import run_folder as rf
from backends.registry import backend_for
from runner.preflight import check_backend, settle_backend
from runner.persistence import open_checkpointer
from runner.run_folder import new_run_folder
from state.config import Settings
from state.toolprep import StageReport, ToolprepInput, ToolprepState

TOOLPREP_REPORT = "toolprep_report.json"


async def run_toolprep(builder_factory: Callable[[], StateGraph], seed_file: Path, domain: str, out: Path,
                       settings: Settings, seed: int, console: Console) -> ToolprepState:
    seeds = read_seed_tools(seed_file)
    check_backend(settings)
    backend = backend_for(settings)
    await settle_backend(backend, console)
    with new_run_folder(out, "toolprep") as folder:
        folder.write_json(rf.CONFIG, {"command": "toolprep", "domain": domain, "seed_file": str(seed_file.resolve()),
                                      "seed": seed, "settings": settings.public()})
        async with open_checkpointer(folder.file(rf.CHECKPOINTS)) as saver:
            graph = builder_factory().compile(checkpointer=saver)
            with console.status("preparing the toolset"):
                await graph.ainvoke(ToolprepInput(domain=domain, seed_tools=seeds, seed=seed),
                                    {"configurable": {"thread_id": "toolprep"}}, context=settings)
            state = ToolprepState.model_validate((await graph.aget_state({"configurable": {"thread_id": "toolprep"}}))
                                                 .values)
        folder.write_json(rf.TOOLSET, [t.toolset_entry() for t in state.tools])
        folder.write_json(TOOLPREP_REPORT, {"domain": domain, "seed_tools": len(seeds), "tools": len(state.tools),
                                            "field_types": state.field_types,
                                            "stages": [r.model_dump() for r in state.reports],
                                            **(backend.record() if hasattr(backend, "record") else {})})
    folder.release()
    console.print(report_table(state.reports))
    console.print(f"wrote {len(state.tools)} tools to {folder.file(rf.TOOLSET)}")
    return state


def report_table(reports: list[StageReport]) -> Table:
    table = Table(title="Tool preparation")
    for col in ("stage", "produced", "kept", "repaired", "dropped"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    for r in reports:
        table.add_row(r.stage, str(r.produced), str(r.kept), str(r.repaired), str(len(r.dropped)))
    return table
