"""Tool executor node: runs the assistant's tool calls on the dialogue's sandbox.

Synchronous on purpose: SQLite calls block, so LangGraph runs this node in a worker thread.
Errors of any kind come back to the assistant as structured tool messages; nothing raises.
"""

from __future__ import annotations

import json

from langchain_core.messages import AIMessage, ToolMessage
from langgraph.runtime import Runtime

from environment.sandbox import SANDBOXES
from nodes.common import settings_of
from state.config import Settings
from state.dialogue import DialogueState, ExecutedCall
from state.tools import ToolError, ToolResult


def tool_message_content(result: ToolResult) -> str:
    return json.dumps(result.to_content(), ensure_ascii=False, default=str)


def tool_executor(state: DialogueState, runtime: Runtime[Settings]) -> dict:
    settings = settings_of(runtime)
    last = state.messages[-1]
    assert isinstance(last, AIMessage) and last.tool_calls, "routed here only after tool calls"
    tools = {t.name: t for t in state.toolset}
    sandbox = SANDBOXES.checkout(state.dialogue_id, state.source_db, state.writes(tools))
    malformed = dict(zip(last.additional_kwargs.get("malformed_tool_call_ids", []),
                         last.additional_kwargs.get("malformed_tool_call_arguments", [])))
    messages, calls = [], []
    with sandbox.lock:
        for i, call in enumerate(last.tool_calls):
            tool = tools.get(call["name"])
            if call["id"] in malformed:
                result = ToolResult(ok=False, error=ToolError(
                    type="invalid_arguments",
                    message=f"arguments are not valid JSON: {malformed[call['id']][:200]!r}"))
            elif tool is None:
                known = ", ".join(sorted(tools)[:30])
                result = ToolResult(ok=False, error=ToolError(
                    type="unknown_tool", message=f"there is no tool named {call['name']!r}; available: {known}"))
            elif i >= settings.max_tool_calls_per_step:
                result = ToolResult(ok=False, error=ToolError(
                    type="budget_exceeded",
                    message=f"only {settings.max_tool_calls_per_step} tool calls run per step; call it again"))
            else:
                result = sandbox.run(tool, call["args"], settings.max_result_rows)
            calls.append(ExecutedCall(tool_call_id=call["id"], tool=call["name"], arguments=call["args"],
                                      result=result, mode=tool.mode if tool else None, task_index=state.task_index))
            messages.append(ToolMessage(content=tool_message_content(result), tool_call_id=call["id"],
                                        name=call["name"], status="success" if result.ok else "error"))
    return {"messages": messages, "calls": calls}
