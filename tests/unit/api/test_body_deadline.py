"""The body deadline: a read past it fails with BodyTimeoutError, others are untouched."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message

from modelserve.api.body_deadline import receive_by
from modelserve.errors import BodyTimeoutError


async def _never() -> Message:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def _body() -> Message:
    return {"type": "http.request", "body": b"{}", "more_body": False}


async def test_receive_by_gives_up_once_the_deadline_passes() -> None:
    """A body that never comes fails with BodyTimeoutError, not before its deadline."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(BodyTimeoutError):
        await receive_by(_never, started + 0.05, 0.05)
    assert loop.time() >= started + 0.05


async def test_receive_by_returns_a_body_that_arrives_in_time() -> None:
    """A read that completes before its deadline gives its message."""
    deadline = asyncio.get_running_loop().time() + 5
    assert (await receive_by(_body, deadline, 5))["body"] == b"{}"


async def test_receive_by_refuses_at_once_when_the_deadline_has_passed() -> None:
    """No read starts after the deadline."""
    deadline = asyncio.get_running_loop().time() - 1
    with pytest.raises(BodyTimeoutError):
        await receive_by(_body, deadline, 5)


async def test_receive_by_leaves_other_cancellations_alone() -> None:
    """A read cancelled by someone else (a shutdown) is cancelled, not a body timeout."""
    deadline = asyncio.get_running_loop().time() + 5
    read = asyncio.ensure_future(receive_by(_never, deadline, 5))
    await asyncio.sleep(0)
    read.cancel()
    with pytest.raises(asyncio.CancelledError):
        await read


async def test_receive_by_times_out_each_of_many_waiting_reads() -> None:
    """Every read past its deadline fails, and the one still in time keeps waiting."""
    now = asyncio.get_running_loop().time()
    late = [asyncio.ensure_future(receive_by(_never, now + 0.05, 0.05)) for _ in range(5)]
    in_time = asyncio.ensure_future(receive_by(_never, now + 60, 60))
    results = await asyncio.gather(*late, return_exceptions=True)
    assert all(isinstance(r, BodyTimeoutError) for r in results)
    assert not in_time.done()
    in_time.cancel()
