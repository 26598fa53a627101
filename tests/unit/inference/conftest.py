"""Inference-layer fixtures and hooks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop

BOTH_LOOPS_MODULES = ("test_batcher",)
"""Modules whose async tests run on asyncio's loop and on uvloop, which the server uses
(uvloop's timers differ: ``call_at`` in the past returns a plain Handle, for instance)."""


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]] | None:
    module = getattr(item, "module", None)
    if module is not None and module.__name__.rpartition(".")[2] in BOTH_LOOPS_MODULES:
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    # pytest-asyncio 1.5 refuses None once the hook exists: other modules get the default loop.
    return {"asyncio": asyncio.new_event_loop}
