"""The offline backend: deterministic under a seed, no network, the same outputs as the LLM backend."""

from __future__ import annotations

from langchain_core.messages import AIMessage

from backends.base import (AssistantRequest, JudgeRequest, TaskRequest, ToolProposalRequest, ToolRepairRequest,
                           UserTurnRequest)
from backends.offline.assistant import assistant_turn
from backends.offline.judge import judge
from backends.offline.tasks import generate_task
from backends.offline.user import user_turn
from environment.derive import derive_tools
from state.dialogue import Usage, UserTurn, Verdict
from state.tasks import Task


class OfflineBackend:
    """Schema-derived tools, data-grounded tasks, template-varied users, a plan-following assistant and
    a rubric check against the executed calls."""

    name = "offline"

    async def propose_tools(self, request: ToolProposalRequest) -> tuple[list[dict[str, object]], Usage]:
        return [t.model_dump() for t in derive_tools(request.database, request.max_tools)], Usage()

    async def repair_tool(self, request: ToolRepairRequest) -> tuple[dict[str, object] | None, Usage]:
        return None, Usage()

    async def generate_task(self, request: TaskRequest) -> tuple[Task, Usage]:
        return generate_task(request), Usage()

    async def user_turn(self, request: UserTurnRequest) -> tuple[UserTurn, Usage]:
        return user_turn(request), Usage()

    async def assistant_turn(self, request: AssistantRequest) -> tuple[AIMessage, Usage]:
        return assistant_turn(request), Usage()

    async def judge(self, request: JudgeRequest) -> tuple[Verdict, Usage]:
        return judge(request), Usage()
