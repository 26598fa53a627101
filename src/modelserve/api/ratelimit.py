"""Per-caller rate limits by operation, with the ``limits`` package.

Who is counted: the API key's *name* when auth identified one (``request.state.caller``),
else the client IP. ``X-Forwarded-For`` is read only when the direct peer is in
``rate_limit.trusted_proxies``; the client is then the right-most address that is not itself a
trusted proxy, so a client cannot pick its identity by sending the header.

What is counted: the :class:`~modelserve.api.route_table.Operation` a route declares in the
route table, never a URL: ``predict`` against ``rate_limit.predict``, ``predict_rows`` against
``rate_limit.predict_batch`` (one per request, or one per row with ``count_rows``), ``admin``
against ``rate_limit.admin``. Every counted request is charged 1 before its body is read, so a
batch refused as too large or invalid still costs; with ``count_rows`` the route calls
:func:`charge_rows` for the other rows once it knows the count. Routes that declare no
operation are never limited: probes, ``/metrics``, ``/models`` and the docs. Counters are
keyed by operation and caller, so every route declaring an operation
(``/v2/models/{name}/infer`` too) spends the same budget.

Answers: over the limit → 429 ``rate_limited`` with ``Retry-After``; every counted response
carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (Unix time
in seconds when the window frees up). Storage unreachable or slower than ``redis_timeout_ms``
→ allowed without those headers (``fail_open``, the default) or 503
``rate_limit_unavailable``; either way a warning is logged at most once per interval.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
)
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserve.api.errors import answer_error, rate_limit_headers
from modelserve.api.route_table import Operation, RouteTable
from modelserve.cache.base import OutageTracker
from modelserve.errors import (
    ModelserveError,
    RateLimitedError,
    RateLimitUnavailableError,
    RateWindow,
)
from modelserve.observability import metrics
from modelserve.settings import RateLimitSettings

if TYPE_CHECKING:
    from redis.asyncio import ConnectionPool

log = structlog.get_logger(__name__)

_STATE_KEY = "rate_limit"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one charge: allowed or not, and the window that decided."""

    allowed: bool
    window: RateWindow
    limit: str
    """The limit that decided, as configured (``100/minute``)."""
    retry_after_s: int = 0
    """Refusals: seconds until the window frees up (at least 1)."""


class RouteLimiter:
    """The configured limits per operation, their storage, and the caller's identity rules."""

    def __init__(self, settings: RateLimitSettings, redis_url: str | None = None) -> None:
        self.count_rows = settings.count_rows
        self.fail_open = settings.fail_open
        self._limits: dict[Operation, list[RateLimitItem]] = {
            Operation.PREDICT: parse_many(settings.predict),
            Operation.PREDICT_ROWS: parse_many(settings.predict_batch),
            Operation.ADMIN: parse_many(settings.admin),
        }
        self._trusted: list[IPNetwork] = [
            ipaddress.ip_network(cidr, strict=False) for cidr in settings.trusted_proxies
        ]
        self._timeout_s = settings.redis_timeout_ms / 1000
        self._pool: ConnectionPool | None = None
        self._storage: MemoryStorage | RedisStorage
        if settings.storage == "redis":
            if redis_url is None:
                raise ValueError("rate_limit.storage is redis but redis_url is not set")
            # Imported here: redis-py costs every start-up a fraction of a second.
            from redis.asyncio import ConnectionPool

            self._pool = ConnectionPool.from_url(
                redis_url,
                socket_timeout=self._timeout_s,
                socket_connect_timeout=self._timeout_s,
            )
            self._storage = RedisStorage(
                "async+" + redis_url,
                implementation="redispy",
                key_prefix=settings.redis_prefix,
                # limits types its options as scalars but hands them to redis-py unchanged.
                connection_pool=self._pool,  # type: ignore[arg-type]
            )
        else:
            self._storage = MemoryStorage()
        strategy = (
            MovingWindowRateLimiter
            if settings.strategy == "moving-window"
            else FixedWindowRateLimiter
        )
        self._strategy: RateLimiter = strategy(self._storage)
        self.tracker = OutageTracker(f"{settings.storage} rate limits")

    def identity(self, scope: Scope) -> str:
        """``key:<name>`` for an authenticated caller, else ``ip:<address>``."""
        caller = scope.get("state", {}).get("caller")
        if caller:
            return f"key:{caller}"
        return f"ip:{self.client_ip(scope)}"

    def client_ip(self, scope: Scope) -> str:
        """The peer address, or the client a trusted proxy forwarded for.

        Every hop read from ``X-Forwarded-For`` must parse as an IP address and counts in its
        canonical form; a header holding anything else is ignored and the peer counts.
        """
        peer = peer_address(scope)
        if not self._trusted:
            return peer
        peer_ip = _parse_ip(peer)
        if peer_ip is None or not self._is_trusted(peer_ip):
            return peer
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        hops: list[IPAddress] = []
        for name, value in headers:
            if name != b"x-forwarded-for":
                continue
            for part in value.decode("latin-1").split(","):
                if not (text := part.strip()):
                    continue
                if (address := _parse_ip(text)) is None:
                    return peer
                hops.append(address)
        for address in reversed(hops):
            if not self._is_trusted(address):
                return str(address)
        return str(hops[0]) if hops else peer

    def _is_trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self._trusted)

    async def charge(self, operation: Operation, identity: str, cost: int = 1) -> Verdict | None:
        """Count ``cost`` against every limit of ``operation``; ``None`` when storage is down."""
        if not self.tracker.available():
            return None
        try:
            async with asyncio.timeout(self._timeout_s):
                verdict = await self._charge(operation, identity, cost)
        except Exception as exc:  # storage failures are decided by fail_open, never a 500
            self.tracker.failed(exc, "charge")
            return None
        self.tracker.succeeded()
        return verdict

    async def _charge(self, operation: Operation, identity: str, cost: int) -> Verdict:
        strategy = self._strategy
        tightest: tuple[int, float, RateLimitItem] | None = None
        key = operation.value
        for item in self._limits[operation]:
            allowed = await strategy.hit(item, key, identity, cost=cost)
            reset_at, remaining = await strategy.get_window_stats(item, key, identity)
            if not allowed:
                retry_after_s = max(1, math.ceil(reset_at - time.time()))
                return Verdict(False, _window(item, 0, reset_at), str(item), retry_after_s)
            if tightest is None or remaining < tightest[0]:
                tightest = (remaining, reset_at, item)
        assert tightest is not None  # noqa: S101 - parse_many never returns an empty list
        remaining, reset_at, item = tightest
        return Verdict(True, _window(item, remaining, reset_at), str(item))

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        timer = getattr(self._storage, "timer", None)
        if timer is not None:
            timer.cancel()


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def peer_address(scope: Scope) -> str:
    """The address of the connection's other end (``unknown`` when the server gives none)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _window(item: RateLimitItem, remaining: int, reset_at: float) -> RateWindow:
    return RateWindow(item.amount, max(0, remaining), math.ceil(reset_at))


class RateLimitMiddleware:
    """Pure ASGI: charge the route's operation before the endpoint runs; add headers after."""

    def __init__(self, app: ASGIApp, *, limiter: RouteLimiter, table: RouteTable) -> None:
        self.app = app
        self.limiter = limiter
        self.table = table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        counted = self._counted(scope)
        if counted is None:
            await self.app(scope, receive, send)
            return
        operation, route = counted
        limiter = self.limiter
        state = scope.setdefault("state", {})
        identity = limiter.identity(scope)
        if operation is Operation.INFER:
            state[_STATE_KEY] = _Infer(limiter, route, identity)
            await self.app(scope, receive, self._with_headers(state, send))
            return
        try:
            # Every request costs 1 before its body is read (an oversized or invalid batch
            # too); with count_rows the route charges the remaining rows once it knows them.
            verdict = await _enforce(limiter, operation, route, identity, 1)
        except ModelserveError as exc:
            response = answer_error(scope, exc)
            await response(scope, receive, send)
            return
        if operation is Operation.PREDICT_ROWS and limiter.count_rows:
            state[_STATE_KEY] = _Deferred(limiter, operation, route, identity, verdict)
        else:
            state[_STATE_KEY] = verdict
        await self.app(scope, receive, self._with_headers(state, send))

    @staticmethod
    def _with_headers(state: dict[str, object], send: Send) -> Send:
        """``send``, adding the rate headers of the request's verdict to the response."""

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                verdict = state.get(_STATE_KEY)
                if isinstance(verdict, _Deferred):
                    verdict = verdict.first
                if isinstance(verdict, Verdict) and verdict.allowed:
                    message["headers"] = [
                        *message.get("headers", []),
                        *(
                            (k.lower().encode(), v.encode())
                            for k, v in rate_limit_headers(verdict.window).items()
                        ),
                    ]
            await send(message)

        return send_with_headers

    def _counted(self, scope: Scope) -> tuple[Operation, str] | None:
        """The operation the request spends and its route label, or ``None`` (not limited)."""
        if scope["type"] != "http":
            return None
        matched = self.table.route_for(scope)
        if matched is None or not matched.allows(scope["method"]):
            return None
        operation = matched.spec.operation
        return None if operation is None else (operation, matched.spec.path)


@dataclass(frozen=True, slots=True)
class _Deferred:
    """The rest of a charge, made by the endpoint once it knows the cost (rows of a batch)."""

    limiter: RouteLimiter
    operation: Operation
    route: str
    """The declared path (the metrics' route label)."""
    identity: str
    first: Verdict | None
    """The verdict of the 1 charged before the body was read."""


@dataclass(frozen=True, slots=True)
class _Infer:
    """A charge of a route declared ``infer``, made by the endpoint once it knows its rows."""

    limiter: RouteLimiter
    route: str
    identity: str


async def charge_infer(request: Request, rows: int) -> None:
    """Charge a request of a route declared ``infer`` as its ``rows`` would cost on /predict
    (one row) or /predict-batch (several); a no-op for other routes or without limits."""
    pending = request.scope.get("state", {}).get(_STATE_KEY)
    if not isinstance(pending, _Infer):
        return
    request.scope["state"][_STATE_KEY] = await _spend_rows(
        pending.limiter, pending.route, pending.identity, rows
    )


def rows_charge_pending(scope: Scope) -> bool:
    """Whether this request still has rows to charge once its body is parsed (``count_rows``,
    or a route declared ``infer`` under limits): the charge is made on the event loop."""
    return isinstance(scope.get("state", {}).get(_STATE_KEY), _Deferred | _Infer)


async def charge_rows(request: Request, rows: int) -> None:
    """Bring this request's charge to ``rows`` when ``count_rows`` is on; a no-op otherwise.

    1 was charged before the body was read, so ``rows - 1`` more are charged here. Raises
    :class:`RateLimitedError` (429) or :class:`RateLimitUnavailableError` (503).
    """
    deferred = request.scope.get("state", {}).get(_STATE_KEY)
    if not isinstance(deferred, _Deferred):
        return
    state = request.scope["state"]
    state[_STATE_KEY] = deferred.first
    if rows > 1:
        state[_STATE_KEY] = await _enforce(
            deferred.limiter, deferred.operation, deferred.route, deferred.identity, rows - 1
        )


async def _enforce(
    limiter: RouteLimiter, operation: Operation, route: str, identity: str, cost: int
) -> Verdict | None:
    verdict = await limiter.charge(operation, identity, cost)
    if verdict is None:
        if not limiter.fail_open:
            raise RateLimitUnavailableError()
        return None
    if not verdict.allowed:
        metrics.record_rate_limited(route)
        raise RateLimitedError(verdict.limit, verdict.window, verdict.retry_after_s)
    return verdict


async def enforce_predict(
    limiter: RouteLimiter, identity: str, rows: int, route: str = "ModelInfer"
) -> None:
    """Spend an Open Inference Protocol request's budget as ``/predict`` (one row) or
    ``/predict-batch`` (several rows, one per row with ``count_rows``) would spend it
    (gRPC; REST routes declare the ``infer`` operation and call :func:`charge_infer`)."""
    await _spend_rows(limiter, route, identity, rows)


async def _spend_rows(
    limiter: RouteLimiter, route: str, identity: str, rows: int
) -> Verdict | None:
    if rows <= 1:
        return await _enforce(limiter, Operation.PREDICT, route, identity, 1)
    cost = rows if limiter.count_rows else 1
    return await _enforce(limiter, Operation.PREDICT_ROWS, route, identity, cost)
