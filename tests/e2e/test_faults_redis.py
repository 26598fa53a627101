"""Redis slow and flapping under load, in real processes: predictions keep being served (the
cache falls back to a miss, rate limits fail open or closed as configured), and each back-end's
outage is logged once per warning interval, not once per request or per flap."""

from __future__ import annotations

import functools
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from modelserve.cache.base import WARN_INTERVAL_S
from tests.conftest import free_port
from tests.e2e.conftest import IRIS_ONNX, RunningServer, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

SETOSA = [5.1, 3.5, 1.4, 0.2]
KEY_SECRET = "a shared secret of this test run, 32+ chars"  # noqa: S105 - a test fixture value
CLIENTS = 4
MAX_REQUESTS = 5000
LOAD_DEADLINE_S = 120.0
FLAPS = 4


class OwnRedis:
    """A redis-server of one test on a fixed port, which the test pauses, kills and restarts."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is not installed; run the suite with make test"
        self._command = [binary, "--bind", "127.0.0.1", "--port", str(free_port())]
        self._command += ["--save", "", "--appendonly", "no", "--dir", str(directory)]
        self.port = int(self._command[4])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = self.start()

    def start(self) -> subprocess.Popen[bytes]:
        self.proc = subprocess.Popen(self._command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self.proc
            except OSError:
                time.sleep(0.02)
        raise AssertionError("redis-server did not start")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[OwnRedis]:
    own = OwnRedis(tmp_path)
    yield own
    own.proc.send_signal(signal.SIGCONT)
    own.kill()


def _config(directory: Path, demo_models_dir: Path, url: str, *, fail_open: bool) -> Path:
    """iris with the Redis cache and Redis rate limits (a budget no test reaches)."""
    settings = {
        "models": [{"name": "iris", "path": str(demo_models_dir / IRIS_ONNX)}],
        "redis_url": url,
        "cache": {"backend": "redis", "key_secret": KEY_SECRET, "redis_timeout_ms": 200},
        "rate_limit": {
            "enabled": True,
            "storage": "redis",
            "predict": "1000000/minute",
            "fail_open": fail_open,
            "redis_timeout_ms": 200,
        },
    }
    return write_config(directory, settings, f"open-{fail_open}.yaml")


@dataclass(frozen=True)
class Answer:
    status: int
    code: str | None
    cache: str | None
    limited: bool
    retry_after: str | None


@dataclass
class Load:
    """CLIENTS clients posting SETOSA until stopped (bounded in count and time)."""

    server: RunningServer
    answers: list[Answer] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)

    def _client(self) -> None:
        deadline = time.monotonic() + LOAD_DEADLINE_S
        with httpx.Client(base_url=self.server.base_url, timeout=30) as client:
            while not self.stopped.is_set() and time.monotonic() < deadline:
                if len(self.answers) >= MAX_REQUESTS:
                    return
                try:
                    r = client.post("/predict", json={"features": SETOSA})
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                code = r.json().get("code") if r.status_code != 200 else None
                limited = "x-ratelimit-limit" in r.headers
                self.answers.append(
                    Answer(
                        r.status_code,
                        code,
                        r.headers.get("x-cache"),
                        limited,
                        r.headers.get("retry-after"),
                    )
                )

    def count(self) -> int:
        return len(self.answers)

    def wait_for(self, more: int) -> None:
        """Until ``more`` further answers have come back."""
        target = self.count() + more
        deadline = time.monotonic() + LOAD_DEADLINE_S
        while self.count() < target:
            assert time.monotonic() < deadline, "the load stalled"
            time.sleep(0.01)

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._client) for _ in range(CLIENTS)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        for thread in self._threads:
            thread.join(timeout=60)


def _outage_lines(server: RunningServer) -> Counter[tuple[str, str]]:
    """(event, backend) of every backend_unavailable / backend_recovered line."""
    return Counter(
        (str(line["event"]), str(line["backend"]))
        for line in server.log_lines()
        if line.get("event") in ("backend_unavailable", "backend_recovered")
    )


def _wait_until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)


BACKENDS = ("redis cache", "redis rate limits")


def _each_once(backends: tuple[str, ...]) -> Counter[tuple[str, str]]:
    """One backend_unavailable and one backend_recovered line for each of ``backends``."""
    return Counter((e, b) for e in ("backend_unavailable", "backend_recovered") for b in backends)


def _outages_ended(server: RunningServer, required: tuple[str, ...]) -> bool:
    """Each of ``required`` logged an outage, and every logged outage its recovery."""
    lines = _outage_lines(server)
    return all(lines["backend_unavailable", b] for b in required) and all(
        lines["backend_recovered", b] == lines["backend_unavailable", b] for b in BACKENDS
    )


def test_redis_paused_under_load_serves_and_logs_each_outage_once(
    serve_modelserve: Callable[..., RunningServer],
    tmp_path: Path,
    demo_models_dir: Path,
    redis: OwnRedis,
) -> None:
    """Redis stopped (SIGSTOP: connections open, no answers) under load: the fail-open server
    answers every request 200 (cache MISS, no rate-limit headers), the fail-closed one 200 or
    503 rate_limit_unavailable with Retry-After, never another error; each back-end used logs one
    backend_unavailable and, once Redis answers again, one backend_recovered; HITs return."""
    fail_open = serve_modelserve(_config(tmp_path, demo_models_dir, redis.url, fail_open=True))
    closed = serve_modelserve(_config(tmp_path, demo_models_dir, redis.url, fail_open=False))
    with Load(fail_open) as open_load, Load(closed) as closed_load:
        open_load.wait_for(40)
        closed_load.wait_for(40)
        before = (open_load.count(), closed_load.count())
        redis.proc.send_signal(signal.SIGSTOP)
        open_load.wait_for(150)
        closed_load.wait_for(150)
        during = (open_load.count(), closed_load.count())
        redis.proc.send_signal(signal.SIGCONT)
        # Refused before its cache is asked, the fail-closed server may see only its limiter
        # fail (a request past the limiter at SIGSTOP can still time out in the cache).
        for server, backends in ((fail_open, BACKENDS), (closed, BACKENDS[1:])):
            _wait_until(functools.partial(_outages_ended, server, backends))
        open_load.wait_for(40)
        closed_load.wait_for(40)
    assert open_load.errors == closed_load.errors == []
    paused = open_load.answers[before[0] : during[0]]
    assert {a.status for a in open_load.answers} == {200}
    assert {a.cache for a in paused[20:]} == {"MISS"}  # in flight at SIGSTOP may have hit
    assert not any(a.limited for a in paused[20:])
    assert open_load.answers[-1].cache == "HIT"
    assert open_load.answers[-1].limited
    refused = [a for a in closed_load.answers if a.status != 200]
    assert refused, "the fail-closed server never refused"
    assert {(a.status, a.code) for a in refused} == {(503, "rate_limit_unavailable")}
    assert all(a.retry_after for a in refused)
    assert closed_load.answers[-1].status == 200
    assert _outage_lines(fail_open) == _each_once(BACKENDS)
    assert _outage_lines(closed) - _each_once(BACKENDS[:1]) == _each_once(BACKENDS[1:])


def test_redis_flapping_under_load_serves_and_logs_once_per_interval(
    serve_modelserve: Callable[..., RunningServer],
    tmp_path: Path,
    demo_models_dir: Path,
    redis: OwnRedis,
) -> None:
    """Redis killed and restarted FLAPS times under load: every request is answered 200, and
    each back-end logs backend_unavailable once per 30 s warning interval (the later
    outages are counted in the next warning, not logged one by one)."""
    server = serve_modelserve(_config(tmp_path, demo_models_dir, redis.url, fail_open=True))
    with Load(server) as load:
        load.wait_for(40)
        started = time.monotonic()
        for _ in range(FLAPS):
            redis.kill()
            load.wait_for(40)
            redis.start()
            _wait_until(lambda: load.answers[-1].limited)  # both back-ends are used again
            load.wait_for(40)
        intervals = 1 + int((time.monotonic() - started) // WARN_INTERVAL_S)
    assert load.errors == []
    assert {a.status for a in load.answers} == {200}
    lines = _outage_lines(server)
    for backend in BACKENDS:
        assert 1 <= lines["backend_unavailable", backend] <= intervals, lines
        assert lines["backend_recovered", backend] <= lines["backend_unavailable", backend]
