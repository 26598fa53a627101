"""The in-process app helper of the suite hands tests an app whose start-up is over."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from asgi_lifespan import LifespanManager

from modelserve.app import create_app
from modelserve.inference.core import Readiness
from modelserve.settings import Settings
from tests.conftest import wait_until_loaded

# How long the control state's first sync is held back once the models have loaded: ample
# for a helper that returns too early to do so (it polls every 10 ms).
HOLD_SYNC_S = 0.5


async def test_wait_until_loaded_returns_once_the_app_reads_ready(
    settings_factory: Callable[..., Settings],
) -> None:
    """With the control state's first sync held back after the models loaded, the helper
    returns only after that sync: the app reads ready when it does."""
    app = create_app(settings_factory())
    control_lock = app.state.control.exclusive()
    await control_lock.acquire()

    async def readiness_on_return() -> Readiness:
        await wait_until_loaded(app)
        return app.state.core.server_ready()  # type: ignore[no-any-return]

    async with LifespanManager(app, startup_timeout=60), asyncio.timeout(60):
        waiting = asyncio.create_task(readiness_on_return())
        while not app.state.health.loading_done:  # noqa: ASYNC110 - polling the app's state
            await asyncio.sleep(0.01)
        await asyncio.wait({waiting}, timeout=HOLD_SYNC_S)
        control_lock.release()
        readiness = await waiting

    assert readiness == Readiness(True, [])
