"""Large requests' CPU stages run in a worker thread; small ones stay on the event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from modelserve.api.offload import OFFLOAD_BYTES, run_for_size


def _thread_name(tag: str) -> tuple[str, str]:
    return tag, threading.current_thread().name


@pytest.mark.parametrize(
    ("size", "off_loop"),
    [(OFFLOAD_BYTES, False), (OFFLOAD_BYTES + 1, True)],
    ids=["at-the-threshold", "above-it"],
)
async def test_run_for_size_runs_large_stages_in_a_thread(size: int, off_loop: bool) -> None:
    """A body above OFFLOAD_BYTES gets its stage run outside the loop's thread, with its
    arguments, and the stage's result comes back."""
    loop_thread = threading.current_thread().name
    tag, ran_in = await run_for_size(size, _thread_name, "x")
    assert tag == "x"
    assert (ran_in != loop_thread) is off_loop


async def test_run_for_size_lets_the_loop_run_while_a_large_stage_computes() -> None:
    """While a large stage is busy, other tasks on the loop make progress."""
    release = threading.Event()
    ticks = 0

    def busy() -> str:
        assert release.wait(10)
        return "done"

    async def ticker() -> None:
        nonlocal ticks
        while ticks < 3:
            ticks += 1
            await asyncio.sleep(0)
        release.set()

    result, _ = await asyncio.gather(run_for_size(OFFLOAD_BYTES + 1, busy), ticker())
    assert result == "done"
    assert ticks == 3
