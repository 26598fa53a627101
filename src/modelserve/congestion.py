"""Whether this process keeps up with what arrives: event-loop lag and the accept queue.

Every ``PERIOD_S`` a timer on the serving loop records two things:

* how late it ran (``lag_s``): the time everything ready on the loop took first;
* how many connections wait in the kernel's accept queue of the listening sockets
  (``accept_queue``, read with ``TCP_INFO``; Linux only, 0 elsewhere).

Measured on a busy 2-core machine: offered 25x what a costly model computes, a new connection
per request, the loop mostly ran under 100 ms late while up to a thousand connections waited
seconds in the accept queue, unseen by any deadline (the model thread's share of the GIL and
of the CPU left the loop too little to accept, parse and refuse them all). The serving
protocol reads both before it starts a request and refuses requests with a body at once,
before the app parses them, while either is past its bound (``server.max_loop_lag_ms``,
``server.max_accept_queue``): refusing costs far less than parsing, so the loop catches up
instead of falling further behind.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import time

PERIOD_S = 0.05
"""How often the signals are measured."""

_TCP_INFO_QUEUE = struct.Struct("=24xI")
"""``struct tcp_info`` up to ``tcpi_unacked``, which is the accept queue of a listener."""


class Congestion:
    """The latest lag of ``loop`` (seconds) and accept-queue length of the watched sockets."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.lag_s = 0.0
        self.accept_queue = 0
        self.loop = loop
        self._listeners: list[socket.socket] = []
        self._schedule()

    def watch(self, listeners: list[socket.socket]) -> None:
        """Read the accept queue of these listening sockets from now on."""
        self._listeners = [s for s in listeners if s.family in (socket.AF_INET, socket.AF_INET6)]

    def _schedule(self) -> None:
        self.loop.call_later(PERIOD_S, self._tick, time.monotonic() + PERIOD_S)

    def _tick(self, due_at: float) -> None:
        self.lag_s = max(0.0, time.monotonic() - due_at)
        self.accept_queue = sum(_accept_queue(s) for s in self._listeners)
        if not self.loop.is_closed():
            self._schedule()


def _accept_queue(listener: socket.socket) -> int:
    if sys.platform != "linux" or listener.fileno() < 0:
        return 0
    try:
        info = listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_QUEUE.size)
    except OSError:
        return 0
    (queued,) = _TCP_INFO_QUEUE.unpack(info)
    return int(queued)


_monitor: Congestion | None = None


def congestion(loop: asyncio.AbstractEventLoop) -> Congestion:
    """The monitor of ``loop`` (a process serves on one loop), started on first use."""
    global _monitor  # one monitor per process, made on the serving loop
    if _monitor is None or _monitor.loop is not loop:
        _monitor = Congestion(loop)
    return _monitor
