"""Where the desired state and the process reports live: the store protocol, memory, file.

A store keeps three things: the desired state document (read, and updated atomically by
read-modify-write), a change notification, and one report per process that expires when the
process stops reporting. :class:`FileStore` is the store of one server's gunicorn workers
(files in the run directory, an ``flock`` around updates, notification by mtime polling);
:class:`MemoryStore` that of a single process; Redis is :mod:`modelserve.control.redis_store`.
Documents are returned raw: :mod:`modelserve.control.state` validates everything read.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import structlog

from modelserve.control.state import (
    MAX_DOCUMENT_BYTES,
    DesiredState,
    RefusedDocumentError,
    parse_state,
)

log = structlog.get_logger(__name__)

Change = Callable[[DesiredState], DesiredState]


class ControlStoreError(Exception):
    """The store cannot be reached or written (Redis down, a file system error)."""


class ControlStore(Protocol):
    """What the control plane needs from a store (see the module docstring)."""

    async def start(self, wake: Callable[[], None]) -> None:
        """Begin listening for notifications; ``wake`` is called on each."""
        ...

    async def close(self) -> None: ...

    def changed(self) -> bool:
        """Whether the state may have changed since the last read (cheap: no I/O over a net)."""
        ...

    async def read(self) -> bytes | None:
        """The stored state document (at most ``MAX_DOCUMENT_BYTES`` + 1 bytes), or None."""
        ...

    async def update(self, change: Change) -> DesiredState:
        """Apply ``change`` to the stored state atomically; the state written."""
        ...

    async def notify(self, version: int) -> None:
        """Tell every process the state changed (a hint: readers always re-read)."""
        ...

    async def write_report(self, process: str, report: bytes) -> None:
        """Store this process's report; it expires unless written again within the TTL."""
        ...

    async def remove_report(self, process: str) -> None: ...

    async def reports(self) -> list[bytes]:
        """Every unexpired process report, raw."""
        ...


def current_state(raw: bytes | None) -> DesiredState:
    """The state an update starts from: the stored one, or an empty one if none or refused.

    A refused document is replaced by the writer (its reason logged), which repairs a store
    that something wrote garbage into.
    """
    if raw is None or not raw:
        return DesiredState()
    try:
        return parse_state(raw)
    except RefusedDocumentError as exc:
        log.warning("control_state_refused", reason=str(exc), action="overwritten by an update")
        return DesiredState()


class MemoryStore:
    """The store of a single process: nothing to share, but the same code path."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._state: bytes | None = None
        self._reports: dict[str, tuple[bytes, float]] = {}
        self._changed = False

    async def start(self, wake: Callable[[], None]) -> None:
        return None

    async def close(self) -> None:
        return None

    def changed(self) -> bool:
        changed, self._changed = self._changed, False
        return changed

    async def read(self) -> bytes | None:
        return self._state

    async def update(self, change: Change) -> DesiredState:
        state = change(current_state(self._state))
        self._state = state.to_json()
        self._changed = True
        return state

    async def notify(self, version: int) -> None:
        return None

    async def write_report(self, process: str, report: bytes) -> None:
        self._reports[process] = (report, time.monotonic() + self._ttl_s)

    async def remove_report(self, process: str) -> None:
        self._reports.pop(process, None)

    async def reports(self) -> list[bytes]:
        now = time.monotonic()
        return [report for report, expires in self._reports.values() if expires > now]


class FileStore:
    """Files in a directory private to one server run, shared by its gunicorn workers.

    ``state.json`` holds the desired state, replaced atomically (``os.replace``) under an
    exclusive ``flock`` of ``state.lock``; a change is noticed by its mtime and size.
    ``process-<id>.json`` is each process's report; one older than its TTL is ignored.
    """

    def __init__(self, directory: Path, ttl_s: float) -> None:
        self._directory = directory
        self._ttl_s = ttl_s
        self._state = directory / "state.json"
        self._lock = directory / "state.lock"
        self._seen: tuple[int, int] | None = None

    async def start(self, wake: Callable[[], None]) -> None:
        return None

    async def close(self) -> None:
        return None

    def changed(self) -> bool:
        try:
            stat = os.stat(self._state)
        except FileNotFoundError:
            return False
        stamp = (stat.st_mtime_ns, stat.st_ino)
        if stamp == self._seen:
            return False
        self._seen = stamp
        return True

    async def read(self) -> bytes | None:
        return await asyncio.to_thread(self._read)

    def _read(self) -> bytes | None:
        try:
            with self._state.open("rb") as file:
                return file.read(MAX_DOCUMENT_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ControlStoreError(f"cannot read the control state: {exc.strerror}") from exc

    async def update(self, change: Change) -> DesiredState:
        return await asyncio.to_thread(self._update, change)

    def _update(self, change: Change) -> DesiredState:
        try:
            with self._lock.open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                state = change(current_state(self._read()))
                temporary = self._state.with_suffix(f".{os.getpid()}.tmp")
                temporary.write_bytes(state.to_json())
                os.replace(temporary, self._state)
                return state
        except OSError as exc:
            raise ControlStoreError(f"cannot write the control state: {exc.strerror}") from exc

    async def notify(self, version: int) -> None:
        return None  # the readers poll the file's mtime

    async def write_report(self, process: str, report: bytes) -> None:
        path = self._report_path(process)
        temporary = path.with_suffix(".tmp")
        try:
            temporary.write_bytes(report)
            os.replace(temporary, path)
        except OSError as exc:
            raise ControlStoreError(f"cannot write a report: {exc.strerror}") from exc

    async def remove_report(self, process: str) -> None:
        with contextlib.suppress(OSError):
            self._report_path(process).unlink()

    async def reports(self) -> list[bytes]:
        return await asyncio.to_thread(self._reports)

    def _reports(self) -> list[bytes]:
        now = time.time()
        found = []
        for path in sorted(self._directory.glob("process-*.json"))[:1000]:
            try:
                if now - path.stat().st_mtime > self._ttl_s:
                    continue
                with path.open("rb") as file:
                    found.append(file.read(MAX_DOCUMENT_BYTES + 1))
            except OSError:
                continue  # removed meanwhile: that process stopped
        return found

    def _report_path(self, process: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in process)
        return self._directory / f"process-{safe}.json"
