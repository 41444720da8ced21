"""The loop every command runs on: uvloop where installed, asyncio's own on request."""

from __future__ import annotations

import asyncio
import gc

import pytest

from runner import event_loop


def test_commands_run_on_uvloop_where_it_is_installed(monkeypatch):
    uvloop = pytest.importorskip("uvloop")
    monkeypatch.delenv("FORGE_EVENT_LOOP", raising=False)

    async def loop_type() -> type:
        return type(asyncio.get_running_loop())

    assert event_loop.run(loop_type()) is uvloop.Loop


def test_the_standard_loop_on_request(monkeypatch):
    monkeypatch.setenv("FORGE_EVENT_LOOP", "asyncio")
    assert event_loop.loop_factory() is None

    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert event_loop.run(loop_module()).startswith("asyncio")


def test_a_run_collects_garbage_less_often():
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)

        async def nothing() -> int:
            return 1

        assert event_loop.run(nothing()) == 1
        assert gc.get_threshold()[0] >= 50_000
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
