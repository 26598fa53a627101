"""Locust load test for a running modelserve: ``make loadtest [HOST=127.0.0.1 PORT=8000]``.

Each simulated user checks ``/health`` once, then mixes single-row predictions (weight 3)
and 100-row ``/predict-batch`` requests (weight 1), with rows drawn from iris-like feature
ranges by a seeded RNG (one seed per user, so runs repeat). A response without the
expected fields counts as a failure, not only a non-2xx status.

Bounded by design: loopback hosts only unless ``LOADTEST_ALLOW_REMOTE=1``; each user stops
after ``LOADTEST_MAX_REQUESTS`` requests; the whole run stops after ``-t`` or, when no run
time is given, after ``LOADTEST_MAX_SECONDS``.

Environment: ``LOADTEST_MODEL`` (adds ``?model=``; default: the server's default model),
``LOADTEST_SEED`` (42), ``LOADTEST_WAIT_MAX_S`` (0.05), ``LOADTEST_BATCH_ROWS`` (100).
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import os
import random
from typing import Any
from urllib.parse import urlsplit

import gevent  # type: ignore[import-untyped]  # gevent ships no type information
from locust import HttpUser, between, events, task
from locust.exception import StopUser

FEATURE_RANGES = ((4.3, 7.9), (2.0, 4.4), (1.0, 6.9), (0.1, 2.5))
"""Min and max of the four iris features (sepal length/width, petal length/width, cm)."""

MODEL = os.environ.get("LOADTEST_MODEL", "")
SEED = int(os.environ.get("LOADTEST_SEED", "42"))
WAIT_MAX_S = float(os.environ.get("LOADTEST_WAIT_MAX_S", "0.05"))
BATCH_ROWS = int(os.environ.get("LOADTEST_BATCH_ROWS", "100"))
MAX_REQUESTS = int(os.environ.get("LOADTEST_MAX_REQUESTS", "100000"))
MAX_SECONDS = float(os.environ.get("LOADTEST_MAX_SECONDS", "300"))

_user_ids = itertools.count()
log = logging.getLogger(__name__)


def _query() -> str:
    return f"?model={MODEL}" if MODEL else ""


def _host_allowed(host: str | None) -> bool:
    if os.environ.get("LOADTEST_ALLOW_REMOTE") == "1":
        return True
    name = urlsplit(host).hostname if host else None
    if name == "localhost":
        return True
    try:
        return name is not None and ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _bound_the_run(environment: Any, **_: Any) -> None:
    """Refuse non-loopback hosts; make sure a run without ``-t`` still ends."""
    if not _host_allowed(environment.host):
        log.error(
            "refusing to load %s: loopback only (set LOADTEST_ALLOW_REMOTE=1 for a server you own)",
            environment.host,
        )
        environment.process_exit_code = 2
        gevent.spawn(environment.runner.quit)
        return
    options = environment.parsed_options
    if options is None or not options.run_time:
        gevent.spawn_later(MAX_SECONDS, environment.runner.quit)


events.test_start.add_listener(_bound_the_run)  # type: ignore[no-untyped-call]  # locust untyped


class ModelserveUser(HttpUser):
    """One client: /health on start, then predictions 3:1 single rows to batches."""

    wait_time = between(0.0, WAIT_MAX_S)

    def on_start(self) -> None:
        self.rng = random.Random(SEED + next(_user_ids))
        self.sent = 0
        self.refused = not _host_allowed(self.host)
        if self.refused:
            return  # the first task stops this user (StopUser in on_start logs a traceback)
        with self.client.get("/health", name="/health", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"/health answered {response.status_code}")

    def _row(self) -> list[float]:
        return [round(self.rng.uniform(lo, hi), 2) for lo, hi in FEATURE_RANGES]

    def _count(self) -> None:
        self.sent += 1
        if self.refused or self.sent > MAX_REQUESTS:
            raise StopUser()

    @task(3)
    def predict(self) -> None:
        self._count()
        with self.client.post(
            "/predict" + _query(),
            json={"features": self._row()},
            name="/predict",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
            elif "prediction" not in response.json():
                response.failure(f"no prediction in {response.text[:200]}")

    @task(1)
    def predict_batch(self) -> None:
        self._count()
        with self.client.post(
            "/predict-batch" + _query(),
            json={"batch": [self._row() for _ in range(BATCH_ROWS)]},
            name="/predict-batch",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            predictions = response.json().get("predictions")
            if not isinstance(predictions, list) or len(predictions) != BATCH_ROWS:
                response.failure(f"expected {BATCH_ROWS} predictions: {response.text[:200]}")
