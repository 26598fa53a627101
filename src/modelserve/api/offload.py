"""The CPU-heavy stages of a large request run in a thread, so the event loop keeps answering.

A body near the body limit (1000 rows) costs milliseconds of parsing, validation, conversion
to an array and formatting of the answer; on the event loop every other request, probes
included, waits for all of it. Above :data:`OFFLOAD_BYTES` those stages run in the default
executor instead. They are pure Python or short C calls, so the interpreter hands the GIL back
to the loop at every switch interval (5 ms) rather than after the whole stage; small requests
stay on the loop, where a thread hop would cost more than it saves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final, ParamSpec, TypeVar

OFFLOAD_BYTES: Final = 64 * 1024
"""Bodies larger than this are parsed, converted and answered off the event loop."""

_P = ParamSpec("_P")
_T = TypeVar("_T")


def now_or_in_thread(
    size: int, stage: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
) -> _T | Awaitable[_T]:
    """``stage(*args, **kwargs)`` now, or, when ``size`` (the body's bytes) is large, an
    awaitable of it computed in a thread (for callers that accept either)."""
    if size > OFFLOAD_BYTES:
        return asyncio.to_thread(stage, *args, **kwargs)
    return stage(*args, **kwargs)


async def run_for_size(
    size: int, stage: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
) -> _T:
    """``stage(*args, **kwargs)``: in a thread when ``size`` (the body's bytes) is large."""
    result = now_or_in_thread(size, stage, *args, **kwargs)
    return await result if isinstance(result, Awaitable) else result
