"""DrainingServer's signal handling and heap freezing, without starting a server."""

from __future__ import annotations

import gc
import signal
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import uvicorn
from structlog.testing import capture_logs

from modelserve.draining import DrainingServer
from modelserve.observability.health import HealthState
from modelserve.settings import Settings


class StandInApp:
    """An ASGI app carrying the state create_app() sets; these tests never call it."""

    def __init__(self, health: HealthState, settings: Settings) -> None:
        self.state = SimpleNamespace(health=health, settings=settings)

    async def __call__(self, scope: object, receive: object, send: object) -> None:
        raise AssertionError("not served in these tests")


def make_server(prestop_delay_s: float = 0.0) -> tuple[DrainingServer, HealthState]:
    """A DrainingServer around a stand-in app with the given pre-stop delay."""
    health = HealthState()
    settings = Settings(server={"prestop_delay_s": prestop_delay_s})
    return DrainingServer(uvicorn.Config(StandInApp(health, settings))), health


@pytest.fixture
def unfrozen_heap() -> Iterator[None]:
    """The test may freeze the test process's heap; unfreeze it afterwards."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_draining_server_first_signal_fails_readiness_and_keeps_serving() -> None:
    """With a pre-stop delay, SIGTERM turns readiness off but does not stop the server yet."""
    server, health = make_server(prestop_delay_s=30)

    with capture_logs() as logs:
        server.handle_exit(signal.SIGTERM, None)

    assert health.draining
    assert not server.should_exit
    assert logs[0]["event"] == "shutdown_requested"


def test_draining_server_without_prestop_delay_stops_at_once() -> None:
    """Without a pre-stop delay, SIGTERM stops accepting connections right away."""
    server, _ = make_server(prestop_delay_s=0)

    server.handle_exit(signal.SIGTERM, None)

    assert server.should_exit
    assert not server.force_exit


def test_draining_server_second_signal_cuts_the_prestop_delay_short() -> None:
    """A second SIGTERM during the pre-stop delay starts the drain now, still gracefully."""
    server, _ = make_server(prestop_delay_s=30)
    server.handle_exit(signal.SIGTERM, None)

    server.handle_exit(signal.SIGTERM, None)

    assert server.should_exit
    assert not server.force_exit


def test_draining_server_second_sigint_skips_the_drain() -> None:
    """Ctrl-C twice quits without waiting for connections."""
    server, _ = make_server()
    server.handle_exit(signal.SIGINT, None)

    server.handle_exit(signal.SIGINT, None)

    assert server.force_exit


@pytest.mark.usefixtures("unfrozen_heap")
async def test_draining_server_freezes_the_heap_once_models_are_loaded() -> None:
    """After loading, long-lived objects leave the cyclic collector's generations."""
    server, health = make_server()
    health.loading_done = True

    await server.on_tick(1)

    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("unfrozen_heap")
async def test_draining_server_does_not_freeze_while_models_load() -> None:
    """Nothing is frozen before the models are in memory."""
    server, _ = make_server()

    await server.on_tick(1)

    assert gc.get_freeze_count() == 0
