"""The control store in Redis: shared by every worker of every replica using the same Redis.

Keys, under ``control.redis_prefix``: ``state`` (the desired state document, updated with
WATCH/MULTI so concurrent writers never lose a change), ``process:<id>`` (each process's
report, with a TTL) and the pub/sub channel ``changed`` (a hint carrying the new version;
readers re-read ``state``, and re-read it periodically anyway, so a missed message or a
reconnect still converges). Reads are bounded (``GETRANGE``) before anything is parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError, WatchError

from modelserve.control.state import MAX_DOCUMENT_BYTES, DesiredState
from modelserve.control.store import Change, ControlStoreError, current_state
from modelserve.observability.throttle import LogThrottle

log = structlog.get_logger(__name__)

_TIMEOUT_S = 1.0
_UPDATE_ATTEMPTS = 50
_MAX_PROCESSES = 1000
_RECONNECT_S = 1.0


class RedisStore:
    """See the module docstring."""

    def __init__(self, url: str, prefix: str, ttl_s: float) -> None:
        self._client = aioredis.Redis.from_url(
            url, socket_timeout=_TIMEOUT_S, socket_connect_timeout=_TIMEOUT_S
        )
        self._state_key = f"{prefix}state"
        self._channel = f"{prefix}changed"
        self._report_prefix = f"{prefix}process:"
        self._ttl_ms = max(math.ceil(ttl_s * 1000), 1)
        self._changed = True
        self._listener: asyncio.Task[None] | None = None
        self._closing = False
        self._unreachable = LogThrottle(30.0)

    async def start(self, wake: Callable[[], None]) -> None:
        self._listener = asyncio.create_task(self._listen(wake))

    async def close(self) -> None:
        # The flag as well as the cancel: a cancel that lands as get_message's own timeout
        # fires can be swallowed, and the listening loop would then run for ever.
        self._closing = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._client.aclose()

    def changed(self) -> bool:
        changed, self._changed = self._changed, False
        return changed

    async def read(self) -> bytes | None:
        try:
            raw = await self._client.getrange(self._state_key, 0, MAX_DOCUMENT_BYTES)
        except (RedisError, OSError) as exc:
            raise ControlStoreError(f"Redis: {type(exc).__name__}") from exc
        return _as_bytes(raw)

    async def update(self, change: Change) -> DesiredState:
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                for _ in range(_UPDATE_ATTEMPTS):
                    try:
                        await pipe.watch(self._state_key)
                        raw = await pipe.getrange(self._state_key, 0, MAX_DOCUMENT_BYTES)
                        state = change(current_state(_as_bytes(raw)))
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.set(self._state_key, state.to_json())
                        await pipe.execute()
                        return state
                    except WatchError:
                        continue  # another process wrote meanwhile: start from its state
        except (RedisError, OSError) as exc:
            raise ControlStoreError(f"Redis: {type(exc).__name__}") from exc
        raise ControlStoreError(f"Redis: {_UPDATE_ATTEMPTS} concurrent updates in a row")

    async def notify(self, version: int) -> None:
        try:
            await self._client.publish(self._channel, str(version))
        except (RedisError, OSError) as exc:
            # The others still converge at their next periodic read.
            log.warning("control_notify_failed", error=type(exc).__name__)

    async def write_report(self, process: str, report: bytes) -> None:
        try:
            await self._client.set(self._report_prefix + process, report, px=self._ttl_ms)
        except (RedisError, OSError) as exc:
            raise ControlStoreError(f"Redis: {type(exc).__name__}") from exc

    async def remove_report(self, process: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._client.delete(self._report_prefix + process)

    async def reports(self) -> list[bytes]:
        try:
            keys = []
            async for key in self._client.scan_iter(match=self._report_prefix + "*", count=200):
                keys.append(key)
                if len(keys) >= _MAX_PROCESSES:
                    break
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.getrange(key, 0, MAX_DOCUMENT_BYTES)
                found: list[bytes] = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise ControlStoreError(f"Redis: {type(exc).__name__}") from exc
        return [raw for raw in found if raw]

    async def _listen(self, wake: Callable[[], None]) -> None:
        """Wake the plane on each message; resubscribe after a lost connection."""
        while not self._closing:
            try:
                async with self._client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    self._changed = True  # messages may have been missed while away
                    wake()
                    while not self._closing:
                        message = await pubsub.get_message(timeout=_TIMEOUT_S)
                        if message is not None:
                            self._changed = True
                            wake()
            except (RedisError, OSError) as exc:
                if self._unreachable.allow() is not None:
                    log.warning("control_channel_lost", error=type(exc).__name__)
                await asyncio.sleep(_RECONNECT_S)


def _as_bytes(raw: bytes | str | None) -> bytes | None:
    """A Redis reply as bytes (the client never decodes: ``decode_responses`` is off)."""
    if not raw:
        return None
    return raw if isinstance(raw, bytes) else raw.encode()
