"""Failed authentications counted in Redis, so every replica of a fleet shares one count.

With ``auth.failed_auth_store`` ``redis`` (``auto`` with ``redis_url`` set), a request that
needs a key first asks Redis whether its address is locked out (one round trip, pipelined:
a bounded ``GETRANGE`` of the count and its ``PTTL``), and a failed authentication increments
the count with a script that also starts the window's expiry on the first failure, in one
atomic step. The server's own count (:class:`~modelserve.api.lockout.FailedAuthLimiter`) is
kept as well, and a lockout learnt from Redis is written into it, so the server's other
listeners (the probe port) refuse that address too without asking.

Nothing read back is trusted beyond parsing it: a count that is not a small non-negative
integer is treated as Redis failing, and a window is never longer than the configured one.
Redis unreachable or slower than ``rate_limit.redis_timeout_ms``: with
``rate_limit.fail_open`` the server's own count decides alone; without it, the request is
refused with 503 ``rate_limit_unavailable``. Either way one warning per interval is logged.
"""

from __future__ import annotations

import asyncio
import math

from modelserve.api.lockout import FailedAuthLimiter
from modelserve.cache.base import OutageTracker
from modelserve.errors import RateLimitUnavailableError
from modelserve.settings import Settings

_MAX_COUNT_DIGITS = 12
_FAILED_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return count
"""


class FleetFailures:
    """See the module docstring."""

    def __init__(
        self,
        url: str,
        prefix: str,
        server: FailedAuthLimiter,
        *,
        timeout_s: float,
        fail_open: bool,
    ) -> None:
        # Imported here: redis-py costs every start-up a fraction of a second.
        import redis.asyncio as aioredis

        self._client = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._prefix = prefix
        self._server = server
        self._window_ms = max(1, math.ceil(server.window_s * 1000))
        self._timeout_s = timeout_s
        self._fail_open = fail_open
        self._failed = self._client.register_script(_FAILED_SCRIPT)
        self.tracker = OutageTracker("redis failed-authentication counts")

    async def retry_after_s(self, address: str) -> int | None:
        """Seconds until ``address`` may try again by the fleet's count, or ``None``."""
        if not self._reachable():
            return None
        key = self._prefix + address
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.getrange(key, 0, _MAX_COUNT_DIGITS)
                    pipe.pttl(key)
                    raw_count, raw_ttl_ms = await pipe.execute()
            count = _count(raw_count)
            ttl_ms = _count(raw_ttl_ms) if raw_ttl_ms >= 0 else self._window_ms
        except Exception as exc:  # Redis down, slow or tampered with: fail_open decides
            self._unavailable(exc, "check")
            return None
        self.tracker.succeeded()
        if count < self._server.max_failures:
            return None
        retry_after_s = max(1, math.ceil(min(ttl_ms, self._window_ms) / 1000))
        self._server.lock_out(address, retry_after_s)
        return retry_after_s

    async def failed(self, address: str) -> None:
        """Count one failed authentication from ``address`` for the whole fleet."""
        if not self._reachable():
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                _count(await self._failed(keys=[self._prefix + address], args=[self._window_ms]))
        except Exception as exc:  # as in retry_after_s
            self._unavailable(exc, "count")
            return
        self.tracker.succeeded()

    async def close(self) -> None:
        await self._client.aclose()

    def _reachable(self) -> bool:
        """False during the back-off after a failure (refused when not failing open), so an
        unreachable Redis does not add its timeout to every request."""
        if self.tracker.available():
            return True
        if not self._fail_open:
            raise RateLimitUnavailableError()
        return False

    def _unavailable(self, exc: BaseException, action: str) -> None:
        self.tracker.failed(exc, action)
        if not self._fail_open:
            raise RateLimitUnavailableError() from None


def _count(raw: object) -> int:
    """A non-negative integer of at most :data:`_MAX_COUNT_DIGITS` digits, or ValueError."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        text = str(raw)
    elif isinstance(raw, bytes | str):
        text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
    else:
        raise ValueError("not a count")
    if text == "":
        return 0
    if not text.isdigit() or not text.isascii() or len(text) > _MAX_COUNT_DIGITS:
        raise ValueError("not a count")
    return int(text)


def build_fleet_failures(settings: Settings, server: FailedAuthLimiter) -> FleetFailures | None:
    """The fleet's count when ``auth.failed_auth_store`` resolves to Redis, else ``None``."""
    store = settings.auth.failed_auth_store
    if not settings.auth.enabled or store == "server":
        return None
    if settings.redis_url is None:
        return None  # "auto" without Redis (the validator refuses "redis" without it)
    rate_limit = settings.rate_limit
    return FleetFailures(
        settings.redis_url.get_secret_value(),
        f"{rate_limit.redis_prefix}:auth-failures:",
        server,
        timeout_s=rate_limit.redis_timeout_ms / 1000,
        fail_open=rate_limit.fail_open,
    )
