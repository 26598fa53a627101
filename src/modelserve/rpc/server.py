"""The V2 gRPC server: grpcio's asyncio server in the HTTP server's process and event loop.

It shares the app's data plane (so the same registry, batchers, cache and metrics), API keys
and rate limits. Every RPC passes through the request-context interceptor
(:mod:`modelserve.rpc.interceptor`: request id, access line, request metrics, domain errors →
status codes) and :meth:`GrpcServer._handle`: message-size check against
``server.max_body_bytes``, API key from ``authorization: Bearer`` (or ``x-api-key``) metadata
checked against the method's scope. Standard health checking (``grpc.health.v1``) and
reflection are served beside ``inference.GRPCInferenceService``.

Lifecycle: started in the app's lifespan; on SIGTERM the health service turns NOT_SERVING at
once, and after ``server.prestop_delay_s`` the server stops accepting RPCs and gives those in
flight ``server.grace_period_s`` to finish, before the batchers drain. With several workers
each binds the port with ``SO_REUSEPORT`` and the kernel spreads connections over them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

import grpc
import structlog
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import _async as health_aio  # public as health.aio, set conditionally
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from modelserve.api.auth import ApiKey, AuthGate, served, withheld_reason
from modelserve.api.ratelimit import RouteLimiter, enforce_predict
from modelserve.api.route_table import Access
from modelserve.errors import BodyTooLargeError, InvalidInputError
from modelserve.observability.health import HealthState
from modelserve.observability.tracing import active_tracer
from modelserve.rpc import inference_pb2
from modelserve.rpc.interceptor import RequestContextInterceptor, metadata_as_headers
from modelserve.rpc.servicer import METHODS, SERVICE, Call, Method
from modelserve.settings import Settings
from modelserve.v2.dataplane import DataPlane

log = structlog.get_logger("modelserve.access")
_TRANSPORT_HEADROOM: Final = 2
"""grpcio refuses messages over this many times ``max_body_bytes`` itself (with its own
wording); up to that, modelserve refuses them with a message that names the setting."""


_MONITORING: Final = frozenset({Access.PROBE, Access.METRICS})


class GrpcServer:
    """One process's gRPC server; :meth:`start` binds, :meth:`drain` stops it gracefully."""

    def __init__(
        self,
        plane: DataPlane,
        settings: Settings,
        gate: AuthGate,
        limiter: RouteLimiter | None,
        health_state: HealthState,
    ) -> None:
        self._plane = plane
        self._settings = settings
        self._gate = gate
        self._limiter = limiter
        self._health_state = health_state
        self._max_bytes = settings.body_limit_bytes()
        self._health = health_aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._stopping: asyncio.Task[None] | None = None
        self.port: int | None = None

    async def start(self) -> int:
        """Bind ``server.grpc_port`` (0 picks a free one) and serve; returns the port."""
        server_settings = self._settings.server
        assert server_settings.grpc_port is not None  # noqa: S101 - started only when set
        limit = self._max_bytes * _TRANSPORT_HEADROOM
        server = grpc.aio.server(
            interceptors=[
                RequestContextInterceptor(
                    SERVICE,
                    access_log=server_settings.access_log,
                    access_log_probes=server_settings.access_log_probes,
                    probes=frozenset(m.name for m in METHODS if m.access is Access.PROBE),
                    tracer=active_tracer(),
                )
            ],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 1 if server_settings.workers > 1 else 0),
            ],
        )
        server.add_generic_rpc_handlers([self._inference_handler()])
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            [SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME], server, _reflection_pool()
        )
        address = f"{_host(server_settings.host)}:{server_settings.grpc_port}"
        self.port = server.add_insecure_port(address)
        await server.start()
        self._server = server
        await self._set_serving(True)
        log.info("grpc_server_started", port=self.port)
        return self.port

    @property
    def monitoring_routes(self) -> frozenset[str]:
        """The route labels of probe and statistics methods, left out of /stats' traffic
        figures as ``/v2/health/...`` and ``/metrics`` are."""
        return frozenset(
            f"/{SERVICE}/{method.name}" for method in METHODS if method.access in _MONITORING
        )

    async def drain_on_signal(self) -> None:
        """When the process starts draining: fail health at once, then after the pre-stop
        delay stop accepting RPCs and let those in flight finish."""
        await self._health_state.drain_started.wait()
        await self._set_serving(False)
        await asyncio.sleep(self._settings.server.prestop_delay_s)
        await self.stop()

    async def stop(self) -> None:
        """Stop accepting, give RPCs in flight ``grace_period_s``; every caller waits for it."""
        if self._stopping is None:
            self._stopping = asyncio.create_task(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        server = self._server
        if server is None:
            return
        started = time.perf_counter()
        await self._set_serving(False)
        await server.stop(self._settings.server.grace_period_s)
        log.info("grpc_server_stopped", drain_ms=round((time.perf_counter() - started) * 1000, 3))

    async def _set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", SERVICE):
            await self._health.set(service, status)

    def _inference_handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        # The HTTP route table's rule: repository calls exist only where the admin API does
        # (auth on, an admin key); elsewhere they are UNIMPLEMENTED, as an absent route is 404.
        auth = self._settings.auth
        handlers = {
            method.name: grpc.unary_unary_rpc_method_handler(
                self._bind(method), response_serializer=_serialize
            )
            for method in METHODS
            if served(auth, method.access)
        }
        withheld = withheld_reason(auth, "admin")
        if withheld is not None:
            log.info("grpc_methods_withheld", scope="admin", reason=withheld)
        return grpc.method_handlers_generic_handler(SERVICE, handlers)

    def _bind(self, method: Method) -> Any:
        async def handle(
            raw: bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> Message | bytes:
            return await self._handle(method, raw, context)

        return handle

    async def _handle(
        self, method: Method, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Message | bytes:
        """Size check, API key, decode, call; raises domain errors (the interceptor maps
        them)."""
        if len(raw) > self._max_bytes:
            raise BodyTooLargeError(self._max_bytes)
        key = await self._authorize(
            method, metadata_as_headers(context.invocation_metadata()), context
        )
        try:
            request = method.request.FromString(raw)
        except DecodeError:
            raise InvalidInputError(f"the {method.name} message is not valid protobuf") from None
        caller = key.name if key is not None else None
        call = Call(caller, self._charger(caller, context))
        if method.large is not None and call.charge is None and self._plane.one_job(len(raw)):
            return await method.large(self._plane, request, call)
        return await method.handler(self._plane, request, call)

    async def _authorize(
        self,
        method: Method,
        metadata: list[tuple[bytes, bytes]],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> ApiKey | None:
        """The main port's rule (:class:`AuthGate`): scope, and the failed-authentication
        limit per client address, counted with the other listeners'."""
        if not self._gate.keyring.enabled:
            return None
        key = await self._gate.admit_async(
            method.access, metadata, lambda: _peer_ip(context.peer())
        )
        if key is not None:
            structlog.contextvars.bind_contextvars(api_key_name=key.name)
        return key

    def _charger(self, caller: str | None, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        limiter = self._limiter
        if limiter is None:
            return None
        identity = f"key:{caller}" if caller else f"ip:{_peer_ip(context.peer())}"

        async def charge(rows: int) -> None:
            await enforce_predict(limiter, identity, rows)

        return charge


def _reflection_pool() -> DescriptorPool:
    """The V2 messages' own pool (see the Makefile's proto target) plus health checking's."""
    pool = inference_pb2.POOL
    try:
        pool.FindFileByName(health_pb2.DESCRIPTOR.name)
    except KeyError:
        pool.AddSerializedFile(health_pb2.DESCRIPTOR.serialized_pb)
    return pool


def _serialize(message: Message | bytes) -> bytes:
    """A message's bytes; an answer serialised already (off the loop) goes as it is."""
    if isinstance(message, bytes):
        return message
    return message.SerializeToString()


def _peer_ip(peer: str) -> str:
    """``ipv4:127.0.0.1:5000`` / ``ipv6:[::1]:5000`` → the address alone."""
    _, _, rest = peer.partition(":")
    address = rest.rsplit(":", 1)[0] if rest.count(":") >= 1 else rest
    return address.strip("[]")[:64] or "unknown"


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
