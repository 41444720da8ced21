"""Scripted fake chat models for tests: replies in order, records what they were sent.

langchain-core's own fakes do not implement `bind_tools`, which the assistant role needs.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, Union

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field

from backends.llm.replies import extract_json_object

Reply = Union[AIMessage, str, Callable[[list[BaseMessage]], Union[AIMessage, str]]]


def estimate_tokens(text: str) -> int:
    return len(text) // 4 + 1


class ScriptExhausted(AssertionError):
    pass


class ScriptedChatModel(BaseChatModel):
    """Returns `responses` in order: AIMessages (text or tool_calls), raw strings, or callables of the
    input messages. Each reply gets usage_metadata (estimated from lengths unless the scripted
    message has its own). Every input list is recorded in `calls`, the keyword arguments (e.g. the
    bound `tools`) in `call_kwargs`, and every `bind_tools` call in `bound_tools`."""

    responses: list[Any] = Field(default_factory=list)
    calls: list[list[BaseMessage]] = Field(default_factory=list)
    call_kwargs: list[dict[str, Any]] = Field(default_factory=list)
    bound_tools: list[list[dict[str, Any]]] = Field(default_factory=list)
    position: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def remaining(self) -> int:
        return len(self.responses) - self.position

    def _next(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> ChatResult:
        self.calls.append(list(messages))
        self.call_kwargs.append(dict(kwargs))
        if self.position >= len(self.responses):
            raise ScriptExhausted(f"ScriptedChatModel: no reply left for call {self.position + 1} "
                                  f"(scripted {len(self.responses)})")
        reply = self.responses[self.position]
        self.position += 1
        if callable(reply) and not isinstance(reply, BaseMessage):
            reply = reply(list(messages))
        message = AIMessage(content=reply) if isinstance(reply, str) else reply
        if message.usage_metadata is None:
            prompt = sum(estimate_tokens(m.text) for m in messages)
            completion = estimate_tokens(message.text + str(message.tool_calls or ""))
            message = message.model_copy(update={"usage_metadata": {
                "input_tokens": prompt, "output_tokens": completion, "total_tokens": prompt + completion}})
        else:
            message = message.model_copy()
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        return self._next(messages, kwargs)

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        return self._next(messages, kwargs)

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: str | None = None,
                   **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = [convert_to_openai_tool(t) for t in tools]
        self.bound_tools.append(formatted)
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        # A binding of this same instance, so the script and the records stay shared.
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(self, schema: Any, *, include_raw: bool = False,
                               **kwargs: Any) -> Runnable[LanguageModelInput, Any]:
        """Parses the reply's first tool call arguments, or else its text as JSON, into `schema`."""

        def parse(message: AIMessage) -> Any:
            data = message.tool_calls[0]["args"] if message.tool_calls else extract_json_object(message.text)[0]
            if isinstance(schema, type) and issubclass(schema, BaseModel):
                return schema.model_validate(data)
            return data

        def run(message: AIMessage) -> Any:
            if not include_raw:
                return parse(message)
            try:
                return {"raw": message, "parsed": parse(message), "parsing_error": None}
            except Exception as exc:  # include_raw reports errors instead of raising, like ChatOpenAI
                return {"raw": message, "parsed": None, "parsing_error": exc}

        return self | RunnableLambda(run)
