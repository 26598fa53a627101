"""API keys: who is calling, and may they use this route.

Keys come from ``auth.keys`` (config or ``MODELSERVE_AUTH__KEYS``) and are held only as sha256
digests. A presented key (``Authorization: Bearer <key>`` or ``X-API-Key: <key>``) is hashed
and compared with ``hmac.compare_digest`` against *every* configured digest, so the time taken
does not depend on which key matched or how much of it did.

Contract for route authors:

* When ``auth.enabled``, :class:`AuthMiddleware` runs on every HTTP request (inside the
  request-id middleware). It authenticates the key, stores the :class:`ApiKey` in
  ``request.state.api_key`` and its *name* in ``request.state.caller`` (used for sticky routing
  and rate limits), and enforces :meth:`ApiKeyring.required_scope` of the route's declared
  :class:`~modelserve.api.route_table.Access` (the route table, never a path string):
  ``admin`` routes need ``admin``; ``open`` ones (the docs) need nothing; ``probe`` routes are
  open unless ``protect_probes`` and ``metrics`` routes unless ``protect_metrics`` (then any
  valid key will do); ``predict`` routes, and any path no route declares, need ``predict``.
  Refusals are 401 ``unauthorized`` (with ``WWW-Authenticate: Bearer``) for a missing or
  unknown key and 403 ``forbidden`` for a key without the scope; a client address with too
  many 401s gets 429 ``too_many_auth_failures`` for a while (:mod:`modelserve.api.lockout`).
* Routes of a privileged scope (``admin``) are declared only when auth is on and some key
  holds that scope (:func:`withheld_reason`); otherwise their paths answer 404.
* FastAPI routes declared ``admin`` get a second, explicit guard from the route table:
  ``Depends(require_scope("admin"))``. The dependency returns the caller's :class:`ApiKey`, or
  ``None`` when auth is disabled; it raises :class:`~modelserve.errors.UnauthorizedError` /
  :class:`~modelserve.errors.ForbiddenError`, which the app's handlers turn into the error body.

Keys never reach a log line: only key names are logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from modelserve.api.errors import answer_error
from modelserve.api.fleet_lockout import FleetFailures
from modelserve.api.lockout import FailedAuthLimiter, RefusalLog
from modelserve.api.route_table import Access, RouteTable
from modelserve.errors import (
    AuthLockedOutError,
    ForbiddenError,
    ModelserveError,
    UnauthorizedError,
)
from modelserve.settings import AuthSettings
from modelserve.settings import Scope as KeyScope

log = structlog.get_logger(__name__)

_ANY_KEY = "any"
"""Pseudo-scope: any valid key will do (protected probes and metrics)."""
_BEARER = b"bearer "
_BASIC = b"basic "
_BROWSER_CHALLENGE = {"WWW-Authenticate": 'Basic realm="modelserve", charset="UTF-8"'}
"""Sent with a 401 for the dashboard page: the browser asks for the key (as the password) and
then sends it with the page's own requests to /stats and the assets."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A configured key, without its secret."""

    name: str
    scopes: frozenset[str]


class ApiKeyring:
    """The configured keys as sha256 digests; answers "which key is this?" in constant time."""

    def __init__(self, settings: AuthSettings) -> None:
        self.enabled = settings.enabled
        self.protect_probes = settings.protect_probes
        self.protect_metrics = settings.protect_metrics
        self._entries: list[tuple[bytes, ApiKey]] = []
        for config in settings.keys:
            if config.key is not None:
                digest = hashlib.sha256(config.key.get_secret_value().encode()).digest()
            else:
                assert config.sha256 is not None  # noqa: S101 - the settings validator ensures it
                digest = bytes.fromhex(config.sha256)
            self._entries.append((digest, ApiKey(config.name, frozenset(config.scopes))))

    def identify(self, presented: str | None) -> ApiKey | None:
        """The key whose digest matches ``presented``, or ``None``. Compares against all keys."""
        if not presented:
            return None
        digest = hashlib.sha256(presented.encode()).digest()
        found: ApiKey | None = None
        for stored, key in self._entries:
            if hmac.compare_digest(stored, digest):
                found = key
        return found

    def required_scope(self, access: Access | None) -> str | None:
        """The scope a route of ``access`` needs (``"any"``: any valid key), ``None`` if open.

        ``access`` is ``None`` for a path no route declares: it needs ``predict``, so an
        unknown path tells a caller without a key nothing.
        """
        if access is Access.PROBE:
            return _ANY_KEY if self.protect_probes else None
        if access is Access.METRICS:
            return _ANY_KEY if self.protect_metrics else None
        if access is Access.OPEN:
            return None
        if access is Access.ADMIN:
            return "admin"
        return "predict"

    def check(self, key: ApiKey | None, scope: str) -> None:
        """Raise 401 without a valid key, 403 when the key lacks ``scope``."""
        if key is None:
            raise UnauthorizedError()
        if scope != _ANY_KEY and scope not in key.scopes:
            raise ForbiddenError(scope)


PRIVILEGED_SCOPES: frozenset[KeyScope] = frozenset({"admin"})
"""Scopes whose routes exist only when auth is on and at least one key holds the scope."""


def withheld_reason(settings: AuthSettings, scope: KeyScope) -> str | None:
    """Why routes needing ``scope`` are not served, or ``None`` when they are.

    With auth off, or no key holding a privileged scope, nobody could prove the right to use
    those routes, so they are left out altogether (404) rather than left open.
    """
    if scope not in PRIVILEGED_SCOPES:
        return None
    if not settings.enabled:
        return f"auth is off: the {scope} routes need auth.enabled and a key with that scope"
    if not any(scope in key.scopes for key in settings.keys):
        return f"no key in auth.keys has the {scope!r} scope"
    return None


def admin_served(settings: AuthSettings) -> bool:
    """Whether admin operations (the V2 model repository among them) are served: only with
    auth on and a key holding the ``admin`` scope, so nobody reaches them unauthenticated."""
    return withheld_reason(settings, "admin") is None


def served(settings: AuthSettings, access: Access) -> bool:
    """Whether routes (HTTP) and methods (gRPC) of ``access`` exist at all: the one rule every
    transport applies, so a privileged operation is absent everywhere or nowhere."""
    return access is not Access.ADMIN or admin_served(settings)


class AuthGate:
    """The one authentication rule of every listener: the main port, gRPC and the probe port.

    Given what a request needs (its declared :class:`Access`), the client address and the
    presented credentials: an address over ``auth.failed_auth_limit`` is refused with 429
    before its key is even looked at, a missing or unknown key is 401 (and counts as a
    failure of that address), a key without the scope is 403. The :class:`FailedAuthLimiter`
    is one count for every process of the server, so guesses spread over ports and workers
    count once per address; with ``fleet`` (Redis) every replica's guesses count too, checked
    by :meth:`admit_async` (the probe port's :meth:`admit` uses the server's count, into which
    lockouts learnt from Redis are written).
    """

    def __init__(
        self,
        keyring: ApiKeyring,
        failures: FailedAuthLimiter,
        fleet: FleetFailures | None = None,
    ) -> None:
        self.keyring = keyring
        self.failures = failures
        self.fleet = fleet

    def admit(
        self,
        access: Access | None,
        headers: list[tuple[bytes, bytes]],
        client_address: Callable[[], str],
    ) -> ApiKey | None:
        """The caller's key (``None`` when none was presented to an open route), or raise
        :class:`AuthLockedOutError`, :class:`UnauthorizedError` or :class:`ForbiddenError`."""
        needed = self.keyring.required_scope(access)
        if needed is None:
            return self.keyring.identify(presented_key(headers))
        address = client_address()
        self._refuse_locked_out(self.failures.retry_after_s(address))
        key = self._identified(headers, address)
        self.keyring.check(key, needed)
        return key

    async def admit_async(
        self,
        access: Access | None,
        headers: list[tuple[bytes, bytes]],
        client_address: Callable[[], str],
    ) -> ApiKey | None:
        """:meth:`admit`, with the fleet's count too when Redis holds one (also raises
        :class:`~modelserve.errors.RateLimitUnavailableError` when it cannot be read and
        ``rate_limit.fail_open`` is false)."""
        fleet = self.fleet
        if fleet is None:
            return self.admit(access, headers, client_address)
        needed = self.keyring.required_scope(access)
        if needed is None:
            return self.keyring.identify(presented_key(headers))
        address = client_address()
        retry_after_s = self.failures.retry_after_s(address)
        if retry_after_s is None:
            retry_after_s = await fleet.retry_after_s(address)
        self._refuse_locked_out(retry_after_s)
        key = self._identified(headers, address)
        if key is None:
            await fleet.failed(address)
        self.keyring.check(key, needed)
        return key

    def _refuse_locked_out(self, retry_after_s: int | None) -> None:
        if retry_after_s is not None:
            raise AuthLockedOutError(self.failures.limit, retry_after_s)

    def _identified(self, headers: list[tuple[bytes, bytes]], address: str) -> ApiKey | None:
        """The presented key, counting a failure of ``address`` when it is missing or unknown."""
        key = self.keyring.identify(presented_key(headers))
        if key is None:
            self.failures.failed(address)
        return key


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key from ``Authorization: Bearer <key>`` (preferred) or ``X-API-Key``, if any.

    ``Authorization: Basic`` (any user name, the key as the password) is what a browser sends
    once someone typed the key into its prompt for the dashboard.
    """
    api_key: str | None = None
    for name, value in headers:
        if name == b"authorization":
            if value[:7].lower() == _BEARER:
                return value[7:].strip().decode("latin-1") or None
            if value[:6].lower() == _BASIC:
                return _basic_password(value[6:].strip())
        elif name == b"x-api-key":
            api_key = value.strip().decode("latin-1") or None
    return api_key


def _basic_password(encoded: bytes) -> str | None:
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, separator, password = decoded.partition(":")
    return password if separator and password else None


class AuthMiddleware:
    """Pure ASGI: authenticate the key, set the caller, enforce the route's scope.

    A client address over ``auth.failed_auth_limit`` gets 429 on every route that needs a key
    (see :mod:`modelserve.api.lockout`); refusals are logged at a bounded rate.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        gate: AuthGate,
        table: RouteTable,
        client_address: Callable[[Scope], str],
        refusals: RefusalLog | None = None,
    ) -> None:
        self.app = app
        self.gate = gate
        self.table = table
        self.client_address = client_address
        self.refusals = refusals or RefusalLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        matched = self.table.route_for(scope)
        access = matched.spec.access if matched is not None else None
        try:
            key = await self.gate.admit_async(
                access, scope["headers"], lambda: self.client_address(scope)
            )
        except ModelserveError as exc:
            await self._refuse(exc, access, scope, receive, send)
            return
        if key is not None:
            state["api_key"] = key
            state["caller"] = key.name
            structlog.contextvars.bind_contextvars(api_key_name=key.name)
        await self.app(scope, receive, send)

    async def _refuse(
        self,
        exc: ModelserveError,
        access: Access | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        needed = self.gate.keyring.required_scope(access)
        self.refusals.refused(path=scope["path"], code=exc.code, required_scope=needed)
        headers = None
        if isinstance(exc, UnauthorizedError) and scope["path"].startswith("/dashboard"):
            headers = _BROWSER_CHALLENGE
        response = answer_error(scope, exc, headers)
        await response(scope, receive, send)


def require_scope(scope: KeyScope) -> Callable[[Request], Awaitable[ApiKey | None]]:
    """A FastAPI dependency: the caller's key if it has ``scope``; ``None`` when auth is off."""

    async def dependency(request: Request) -> ApiKey | None:
        keyring: ApiKeyring | None = getattr(request.app.state, "api_keys", None)
        if keyring is None or not keyring.enabled:
            return None
        key: ApiKey | None = getattr(request.state, "api_key", None)
        if key is None:
            key = keyring.identify(presented_key(request.scope["headers"]))
        keyring.check(key, scope)
        return key

    return dependency
