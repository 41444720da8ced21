"""The messages channel's own reducer (state/messages.py): replace by id, remove, clear, append, and the same
result whether a step's writes are folded one batch at a time or all at once."""

from __future__ import annotations

import itertools

from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage, ToolMessage

from state.messages import REMOVE_ALL_MESSAGES, merge_messages


def _ids(messages):
    return [(type(m).__name__, m.id, m.text) for m in messages]


def test_writes_are_appended_replaced_and_removed_by_id():
    state = merge_messages([], [[HumanMessage("hi", id="1"), AIMessage("hello", id="2")]])
    state = merge_messages(state, [AIMessage("hello again", id="2"), [HumanMessage("bye", id="3")]])
    assert _ids(state) == [("HumanMessage", "1", "hi"), ("AIMessage", "2", "hello again"),
                           ("HumanMessage", "3", "bye")]
    state = merge_messages(state, [[RemoveMessage(id="1"), RemoveMessage(id="unknown")]])
    assert [m.id for m in state] == ["2", "3"]
    no_id = merge_messages(state, [[HumanMessage("anon"), HumanMessage("anon")]])
    assert [m.text for m in no_id][-2:] == ["anon", "anon"] and len(no_id) == 4


def test_remove_all_keeps_only_what_follows_it():
    state = [HumanMessage("a", id="1"), AIMessage("b", id="2")]
    out = merge_messages(state, [[HumanMessage("x", id="3"), RemoveMessage(id=REMOVE_ALL_MESSAGES),
                                  AIMessage("c", id="4")]])
    assert _ids(out) == [("AIMessage", "4", "c")]


def test_raw_messages_become_typed():
    out = merge_messages([{"role": "user", "content": "hi", "id": "1"}],
                         [[{"role": "assistant", "content": "", "id": "2",
                            "tool_calls": [{"id": "c1", "type": "function",
                                            "function": {"name": "f", "arguments": "{}"}}]},
                           {"role": "tool", "content": "ok", "tool_call_id": "c1", "id": "3"}]])
    assert [type(m) for m in out] == [HumanMessage, AIMessage, ToolMessage]
    assert out[1].tool_calls[0]["name"] == "f"


def test_folding_in_batches_or_at_once_gives_the_same_list():
    writes = [[HumanMessage("u1", id="1")], [AIMessage("a1", id="2")], [AIMessage("a1 fixed", id="2")],
              [RemoveMessage(id="1")], [HumanMessage("u2")], [RemoveMessage(id=REMOVE_ALL_MESSAGES)],
              [HumanMessage("u3", id="5")], [AIMessage("a3", id="6"), RemoveMessage(id="5")]]
    start = [HumanMessage("before", id="0")]
    for cut in range(len(writes) + 1):
        for end in range(cut, len(writes) + 1):
            once = merge_messages(start, writes[:end])
            twice = merge_messages(merge_messages(start, writes[:cut]), writes[cut:end])
            assert _ids(once) == _ids(twice), (cut, end)
    assert _ids(merge_messages(start, writes)) == [("AIMessage", "6", "a3")]
    for a, b in itertools.combinations(range(4), 2):  # a few orders of the first writes, each batching-invariant
        batch = [writes[a], writes[b]]
        assert _ids(merge_messages(merge_messages(start, batch[:1]), batch[1:])) == _ids(merge_messages(start, batch))
