"""The source-kind protocol: a kind writes what it must, the rest has defaults the registry calls as they are."""

from __future__ import annotations


import pytest

from environment.sources.kind import SourceKind
from environment.sources.registry import (identity, kind_of, label_of, recorded, register_source_kind,
                                          unregister_source_kind)
from environment.sources.run_hooks import sources_for_run
from environment.sources.runs import current_run
from state.sources import SourceRef


class TraceKind(SourceKind):
    kind = "trace"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bool | None]] = []

    def claims(self, name: str) -> bool:
        return name.startswith("trace://")

    def open(self, name: str):
        raise AssertionError("never opened here")

    def start_run(self, name, scope, resuming):
        self.calls.append(("start", name, resuming))
        if name.endswith("broken"):
            raise RuntimeError("cannot set up")

    def finish_run(self, name, scope):
        self.calls.append(("finish", name, None))


@pytest.fixture()
def trace():
    kind = TraceKind()
    register_source_kind(kind)
    yield kind
    unregister_source_kind("trace")


def test_a_kind_that_does_not_subclass_the_protocol_is_refused():
    class Loose:
        kind, named = "loose", True

    with pytest.raises(TypeError, match="SourceKind"):
        register_source_kind(Loose())  # type: ignore[arg-type]


def test_the_defaults_stand_where_a_kind_writes_no_hook(trace, tmp_path):
    assert kind_of("trace://a/shop.json") is trace
    assert identity("trace://a/shop.json") == "trace://a/shop.json"
    assert label_of("trace://a/shop.json") == "shop"
    assert identity(str(tmp_path / "x" / ".." / "f.db")) == str((tmp_path / "f.db").resolve())
    ref = SourceRef(kind="trace", name="trace://a/shop.json")
    assert recorded([ref]) == [ref]  # nothing of its own to record: the source is not even opened


def test_a_run_starts_each_source_and_finishes_what_started_whatever_ends_it(trace):
    with sources_for_run(["trace://one", "trace://two"], "run-1", resuming=True) as scope:
        assert current_run() == scope and scope.run_id == "run-1"
    assert trace.calls == [("start", "trace://one", True), ("start", "trace://two", True),
                           ("finish", "trace://one", None), ("finish", "trace://two", None)]
    trace.calls.clear()
    with pytest.raises(RuntimeError):
        with sources_for_run(["trace://one", "trace://broken", "trace://three"], "run-2"):
            pass
    assert trace.calls == [("start", "trace://one", False), ("start", "trace://broken", False),
                           ("finish", "trace://one", None)]
    assert current_run().run_id != "run-2"  # the scope is left
