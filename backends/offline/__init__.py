"""The offline backend: deterministic under a seed, no network, the same outputs as the LLM backend."""

from __future__ import annotations

from langchain_core.messages import AIMessage

import datetime as dt
import random

from backends.protocols import (AssistantRequest, ExpansionRequest, JudgeRequest, NothingToManage, OutputSchemaRequest,
                                Question, QuestionRequest, SimulationRequest, TaskRequest, ToolDesignRequest,
                                ToolProposalRequest, ToolRepairRequest, UserTurnRequest)
from backends.offline import toolprep
from backends.offline.assistant import assistant_turn
from backends.offline.judge import judge
from backends.offline.tasks import generate_task, task_shortfall
from backends.offline.user import user_turn
from environment.sources.sqlite.derive import derive_tools
from environment.sources.simulated.simulator import simulate
from state.dialogue import Usage, UserTurn, Verdict
from state.schema import DatabaseSchema
from state.tasks import Task
from state.tools import Tool


class OfflineBackend(NothingToManage):
    """Schema-derived tools, data-grounded tasks, template-varied users, a plan-following assistant and
    a rubric check against the executed calls."""

    name = "offline"

    async def propose_tools(self, request: ToolProposalRequest) -> tuple[list[dict[str, object]], Usage]:
        return [t.model_dump() for t in derive_tools(request.database, request.max_tools)], Usage()

    async def repair_tool(self, request: ToolRepairRequest) -> tuple[dict[str, object] | None, Usage]:
        return None, Usage()

    async def generate_task(self, request: TaskRequest) -> tuple[Task, Usage]:
        return generate_task(request), Usage()

    def task_shortfall(self, tools: list[Tool], database: DatabaseSchema | None) -> str | None:
        """What keeps these tools from yielding any task (None: they yield some); asked before a run starts."""
        return task_shortfall(tools, database)

    async def user_turn(self, request: UserTurnRequest) -> tuple[UserTurn, Usage]:
        return user_turn(request), Usage()

    async def assistant_turn(self, request: AssistantRequest) -> tuple[AIMessage, Usage]:
        return assistant_turn(request), Usage()

    async def judge(self, request: JudgeRequest) -> tuple[Verdict, Usage]:
        return judge(request), Usage()

    async def generate_questions(self, request: QuestionRequest) -> tuple[list[Question], Usage]:
        return toolprep.generate_questions(request), Usage()

    async def design_tools(self, request: ToolDesignRequest) -> tuple[list[dict[str, object]], Usage]:
        return toolprep.design_tools(request), Usage()

    async def expand_tools(self, request: ExpansionRequest) -> tuple[list[dict[str, object]], Usage]:
        return toolprep.expand_tools(request), Usage()

    async def predict_output_schema(self, request: OutputSchemaRequest) -> tuple[dict[str, object], Usage]:
        return toolprep.predict_output_schema(request), Usage()

    async def simulate_tool(self, request: SimulationRequest) -> tuple[object, Usage]:
        """Values drawn from the output schema, consistent with what the dialogue's world already holds."""
        world = request.world.model_copy(deep=True)
        reference = dt.datetime.fromisoformat(request.reference_time)
        return simulate(request.tool, dict(request.arguments), world, random.Random(request.rng_key), reference), \
            Usage()
