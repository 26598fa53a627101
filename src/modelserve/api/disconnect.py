"""Stop waiting for a prediction once its client has hung up.

uvicorn does not cancel a request's task when the client disconnects: without a watch, the
rows of a gone client would wait in the batcher queue and be computed for nobody. While the
prediction is awaited (from 0.05-0.1 s on: ``WATCH_AFTER_S``), a watcher task reads the
``receive`` channel (the body is already read, so the next message is ``http.disconnect``) and
cancels the waiting task. The
batcher then drops the rows still queued (``modelserve_cancelled_rows_total``); rows already in
a model call finish, and their answer is discarded. The route answers 499 (nginx's "client
closed request"), which nobody reads but the access log and the HTTP metrics record; no error
is logged.

The same registry of waiting requests ends the grace period cleanly: :func:`abandon_waiting`
(called by the server shortly before its grace period runs out) makes every request still
waiting for a model answer 503 ``shutting_down``, instead of being cancelled by uvicorn with a
plain-text 500 or, under gunicorn, cut off when the worker is killed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive

from modelserve.errors import ShuttingDownError

T = TypeVar("T")

CLIENT_CLOSED_REQUEST = 499


WATCH_AFTER_S = 0.05
"""Requests still waiting after about this long start watching their connection. Most are
answered sooner: a watcher task per request cost about a quarter of the single-row path, a
timer per request a tenth; one sweep per interval for all waiting requests costs a set entry."""


class _Watch:
    """Cancels ``task`` once its client hangs up; started only for requests that wait."""

    __slots__ = ("abandoned", "gone", "receive", "task", "watcher")

    def __init__(self, task: asyncio.Task[Any], receive: Receive) -> None:
        self.task = task
        self.receive = receive
        self.gone = False
        self.abandoned = False
        self.watcher: asyncio.Task[None] | None = None

    def abandon(self) -> None:
        self.abandoned = True
        self.task.cancel()

    async def watch(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        self.task.cancel()


class _Sweeper:
    """Every ``WATCH_AFTER_S``, starts a watcher for each request waiting since the last sweep."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.fresh: set[_Watch] = set()
        self.older: set[_Watch] = set()
        self.armed = False

    def add(self, watch: _Watch) -> None:
        self.fresh.add(watch)
        if not self.armed:
            self.armed = True
            self.loop.call_later(WATCH_AFTER_S, self.sweep)

    def discard(self, watch: _Watch) -> None:
        self.fresh.discard(watch)
        self.older.discard(watch)
        if watch.watcher is not None:
            watch.watcher.cancel()

    def sweep(self) -> None:
        for watch in self.older:
            if watch.watcher is None:
                watch.watcher = self.loop.create_task(watch.watch())
        self.older |= self.fresh
        self.fresh = set()
        self.armed = bool(self.older)
        if self.armed:
            self.loop.call_later(WATCH_AFTER_S, self.sweep)


_sweeper: _Sweeper | None = None
"""The sweeper of the running loop (a server has one loop; tests make new ones)."""


def abandon_waiting() -> int:
    """Stop every request of this loop still waiting in :func:`while_connected`: each raises
    ``ShuttingDownError``. Returns how many there were."""
    sweeper = _sweeper
    if sweeper is None:
        return 0
    waiting = sweeper.fresh | sweeper.older
    for watch in waiting:
        watch.abandon()
    return len(waiting)


async def while_connected(receive: Receive, work: Awaitable[T]) -> T:
    """Await ``work``; raise ``ClientDisconnect`` as soon as the client hangs up instead, or
    ``ShuttingDownError`` when :func:`abandon_waiting` gives up on it."""
    task = asyncio.current_task()
    assert task is not None  # noqa: S101 - always awaited inside a request task
    global _sweeper
    sweeper = _sweeper
    if sweeper is None or sweeper.loop is not task.get_loop():
        sweeper = _sweeper = _Sweeper(task.get_loop())
    watch = _Watch(task, receive)
    sweeper.add(watch)
    try:
        return await work
    except asyncio.CancelledError:
        if watch.gone and task.uncancel() == 0:
            raise ClientDisconnect() from None
        if watch.abandoned and task.uncancel() == 0:
            raise ShuttingDownError() from None
        raise
    finally:
        sweeper.discard(watch)


def client_closed_request() -> Response:
    """What a route returns for a client that is gone (nobody reads it; the logs record it)."""
    return Response(status_code=CLIENT_CLOSED_REQUEST)
