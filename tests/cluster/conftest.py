"""A fleet on one machine: a real redis-server with a password, two ``modelserve serve
--workers 2`` replicas sharing it (cache and rate limits) with API keys, and a real nginx
load-balancing them with the shipped proxy rules (deploy/nginx/modelserve-proxy.conf).

Every process is real and listens on loopback only; each is stopped by its own pid.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from prometheus_client.multiprocess import MultiProcessCollector

from tests import iris_versions as iv
from tests.conftest import REPO_ROOT, free_port, pythonpath_env, start_redis
from tests.e2e.conftest import MODELSERVE

DEPLOY_NGINX = REPO_ROOT / "deploy" / "nginx"
SETOSA = iv.SETOSA_ROW
LOAD_KEY = "cluster-load-key-3f9a1c7e5b2d4f6a8c0e"
LIMITED_KEY = "cluster-limited-key-8b6d4f2a0c9e7a5b3d1f"
OTHER_KEY = "cluster-other-key-1a3c5e7b9d2f4a6c8e0b"
OPS_KEY = "cluster-ops-key-5d7f9b1c3e5a7c9e1b3d"
BATCH_LIMIT = 20
"""Batches each key may send per minute, fleet-wide (the per-key limit the tests measure)."""


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Replica:
    """One ``modelserve serve --workers 2`` process group on a fixed loopback port."""

    name: str
    config: Path
    directory: Path
    port: int = field(default_factory=free_port)
    probe_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}-{self.starts}.log"

    def start(self) -> None:
        """Start the replica (on the same ports every time) and wait until every worker is
        ready: the probe listener answers for the whole process group."""
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the replica's process group without waiting for it."""
        self.starts += 1
        run_dir = self.directory / f"{self.name}-run-{self.starts}"
        run_dir.mkdir()
        command = [
            *MODELSERVE,
            "serve",
            "--config",
            str(self.config),
            "--workers",
            "2",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        env = {
            **pythonpath_env(),
            "MODELSERVE_SERVER__PROBE_PORT": str(self.probe_port),
            # The multiprocess metrics directory lands here, where the tests can read each
            # worker's own counts.
            "TMPDIR": str(run_dir),
        }
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=1) as client:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited:\n{self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    url = f"http://127.0.0.1:{self.probe_port}/ready"
                    if client.get(url).status_code == 200:
                        return
                time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout_s} s:\n{self.tail()}")

    def terminate(self, timeout_s: float = 60) -> int:
        """SIGTERM, then wait for the drain to finish and the process to exit."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])

    def events(self, **fields: object) -> list[dict[str, Any]]:
        """The JSON log lines of the current run whose values match ``fields``."""
        found = []
        for line in self.log_path.read_bytes().splitlines():
            if not line.startswith(b"{"):
                continue
            event = orjson.loads(line)
            if all(event.get(key) == value for key, value in fields.items()):
                found.append(event)
        return found

    def wait_for_events(
        self, count: int, timeout_s: float = 30, **fields: object
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` log lines of the current run match ``fields``; return them."""
        deadline = time.monotonic() + timeout_s
        while len(found := self.events(**fields)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name}: fewer than {count} lines {fields}:\n{self.tail()}"
                )
            time.sleep(0.05)
        return found

    def worker_requests(self, route: str, status: str | None = None) -> dict[str, float]:
        """Requests to ``route`` counted by each worker of the current run, by the file name
        of the worker's own multiprocess metrics file (one per worker process)."""
        (metrics_dir,) = (self.directory / f"{self.name}-run-{self.starts}").glob(
            "modelserve-metrics-*"
        )
        counts: dict[str, float] = {}
        for path in sorted(metrics_dir.glob("counter_*.db")):
            total = 0.0
            files = [str(path)]
            # prometheus-client ships no annotations for merge()
            for metric in MultiProcessCollector.merge(files, accumulate=False):  # type: ignore[no-untyped-call]
                for sample in metric.samples:
                    if sample.name != "modelserve_http_requests_total":
                        continue
                    if sample.labels.get("route") != route:
                        continue
                    if status is None or sample.labels.get("status") == status:
                        total += sample.value
            counts[path.stem] = total
        return counts

    def requests_counted(self, route: str, status: str | None = None) -> float:
        """This replica's ``modelserve_http_requests_total`` for ``route``, summed over its
        workers, as its /metrics (probe port) reports it."""
        response = httpx.get(
            f"http://127.0.0.1:{self.probe_port}/metrics", headers=_auth(LOAD_KEY), timeout=5
        )
        response.raise_for_status()
        total = 0.0
        pattern = re.compile(r"^modelserve_http_requests_total\{(?P<labels>[^}]*)\} (?P<v>\S+)$")
        for line in response.text.splitlines():
            match = pattern.match(line)
            if match is None:
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
            if labels.get("route") == route and (status is None or labels["status"] == status):
                total += float(match["v"])
        return total


@dataclass
class Nginx:
    """A real nginx in the foreground, unprivileged, with its files in its own directory."""

    directory: Path
    upstreams: list[int]
    server_parameters: str | None = None
    """Each upstream server's parameters; None: those of deploy/nginx/nginx.conf."""
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    down: set[int] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        """The generated configuration: the shipped upstream parameters and proxy rules."""
        shipped = (DEPLOY_NGINX / "nginx.conf").read_text()
        match = re.search(r"^\s*server\s+modelserve:\d+\s+([^;]*);", shipped, re.MULTILINE)
        assert match is not None, "deploy/nginx/nginx.conf has no modelserve upstream server"
        parameters = match[1] if self.server_parameters is None else self.server_parameters
        servers = "\n".join(
            f"server 127.0.0.1:{port} {parameters}{' down' if port in self.down else ''};"
            for port in self.upstreams
        )
        temp = "\n".join(
            f"{kind}_temp_path {self.directory / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        return f"""
daemon off;
worker_processes 1;
pid {self.directory / "nginx.pid"};
error_log {self.directory / "error.log"} warn;
events {{ worker_connections 1024; }}
http {{
    access_log {self.directory / "access.log"};
    {temp}
    upstream modelserve {{
        {servers}
    }}
    server {{
        listen 127.0.0.1:{self.port};
        client_header_timeout 10s;
        include modelserve-locations.conf;
    }}
}}
"""

    def start(self) -> None:
        binary = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
        if binary is None:
            pytest.fail("nginx is not installed; run the suite with `make test`")
        for name in ("modelserve-locations.conf", "modelserve-proxy.conf"):
            shutil.copy(DEPLOY_NGINX / name, self.directory)
        (self.directory / "nginx.conf").write_text(self.config())
        user = _unprivileged_user()
        if user is not None:
            for path in [self.directory, *self.directory.iterdir()]:
                os.chown(path, user.pw_uid, user.pw_gid)
        self.proc = subprocess.Popen(
            [
                binary,
                "-p",
                str(self.directory),
                "-c",
                str(self.directory / "nginx.conf"),
                "-e",
                str(self.directory / "error.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            user=user.pw_uid if user is not None else None,
            group=user.pw_gid if user is not None else None,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        with httpx.Client(timeout=1) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"nginx exited:\n{self.errors()}")
                with contextlib.suppress(httpx.HTTPError):
                    client.get(self.base_url + "/health")
                    return
                time.sleep(0.05)
        raise TimeoutError(f"nginx did not start:\n{self.errors()}")

    def set_down(self, port: int, down: bool) -> None:
        """Take an upstream out of rotation (``down``) or put it back, by a graceful reload;
        returns once nginx runs new worker processes with the new configuration."""
        assert self.proc is not None
        (self.down.add if down else self.down.discard)(port)
        (self.directory / "nginx.conf").write_text(self.config())
        before = _children(self.proc.pid)
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while not _children(self.proc.pid) - before:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nginx did not reload:\n{self.errors()}")
            time.sleep(0.05)

    def errors(self) -> str:
        path = self.directory / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finish the requests in flight
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _children(pid: int) -> set[int]:
    """The pids of a process's children, from /proc."""
    children: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # The command name (field 2) may hold spaces; the parent pid follows it.
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                children.add(int(stat.parent.name))
    return children


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The user nginx runs as when the suite runs as root (nobody); else the suite's own."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam("nobody")


@dataclass
class RedisServer:
    """A real redis-server with a password, restartable on the same port."""

    directory: Path
    password: str
    url: str = ""
    proc: subprocess.Popen[bytes] | None = None

    def start(self, port: int | None = None) -> None:
        self.url, self.proc = start_redis(self.directory, password=self.password, port=port)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/")[0])

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@dataclass
class Fleet:
    """Redis, replicas a and b (sharing one config file), and nginx in front of them."""

    redis: RedisServer
    replicas: list[Replica]
    nginx: Nginx
    config_path: Path
    config: dict[str, Any]

    def predict(self, url: str, key: str = LOAD_KEY, features: list[float] | None = None) -> Any:
        return httpx.post(
            url + "/predict",
            json={"features": features or SETOSA},
            headers=_auth(key),
            timeout=20,
        )


def replica_config(directory: Path, redis_url: str) -> dict[str, Any]:
    """Both replicas' configuration: iris 1 (the default) and 2 (answers versicolor for
    SETOSA), Redis back-ends and control state, API keys, a generous prediction limit, a small
    per-key batch limit, and the config file watched."""
    v1 = iv.dump(iv.logistic(), directory / "v1.joblib")
    v2 = iv.dump(iv.shifted(), directory / "v2.joblib")
    keys = [
        {"name": "load", "key": LOAD_KEY},
        {"name": "limited", "key": LIMITED_KEY},
        {"name": "other", "key": OTHER_KEY},
        {"name": "ops", "key": OPS_KEY, "scopes": ["predict", "admin"]},
    ]
    return {
        "models": [
            iv.version_entry("iris", "1", v1, default=True),
            iv.version_entry("iris", "2", v2),
        ],
        "redis_url": redis_url,
        "cache": {"backend": "redis", "key_secret": "c" * 64, "redis_timeout_ms": 500},
        "rate_limit": {
            "enabled": True,
            "storage": "redis",
            "predict": "1000000/minute",
            "predict_batch": f"{BATCH_LIMIT}/minute",
            "admin": "1000/minute",
            "redis_timeout_ms": 500,
        },
        "auth": {"enabled": True, "keys": keys},
        "server": {
            "prestop_delay_s": 1.0,
            "grace_period_s": 10.0,
            "access_log": False,
            "watch_config": True,
        },
    }


def write_config(path: Path, config: dict[str, Any] | str) -> None:
    """Replace the config file in one step (a rename), as an editor or the kubelet does."""
    text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
    staged = path.with_name(path.name + ".new")
    staged.write_text(text)
    staged.replace(path)


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Redis, two replicas of two workers each, and nginx, shared by the cluster tests (each
    leaves the fleet as it found it); all stopped at the end of the run."""
    root = tmp_path_factory.mktemp("fleet")
    redis = RedisServer(root, password="r" * 32)
    redis.start()
    config = replica_config(root, redis.url)
    config_path = root / "modelserve.yaml"
    write_config(config_path, config)
    replicas = [Replica(name, config_path, root) for name in ("a", "b")]
    nginx_dir = Path(tempfile.mkdtemp(prefix="modelserve-nginx-"))
    nginx = Nginx(nginx_dir, [r.port for r in replicas])
    try:
        for replica in replicas:
            replica.launch()
        for replica in replicas:
            replica.wait_ready()
        nginx.start()
        yield Fleet(redis, replicas, nginx, config_path, config)
    finally:
        nginx.stop()
        for replica in replicas:
            replica.kill()
        redis.stop()
        shutil.rmtree(nginx_dir, ignore_errors=True)


@dataclass
class LoadResult:
    """What a bounded load run sent and how each request ended."""

    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def failed(self) -> int:
        return self.sent - self.statuses[200]


class Load:
    """Continuous prediction traffic through nginx from a few threads, bounded in requests and
    time, until stopped."""

    def __init__(
        self, url: str, threads: int = 4, max_requests: int = 20_000, max_s: float = 180
    ) -> None:
        self.url = url
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._budget = max_requests
        self._deadline = time.monotonic() + max_s
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _take(self) -> bool:
        with self._lock:
            if self._stop.is_set() or self._budget <= 0 or time.monotonic() > self._deadline:
                return False
            self._budget -= 1
            return True

    def _run(self) -> None:
        # A new connection per request: the tests reload nginx under load, and a client's
        # idle keep-alive connection closed by an old nginx worker would race its next request.
        with httpx.Client(
            base_url=self.url,
            headers=_auth(LOAD_KEY),
            timeout=20,
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as client:
            while self._take():
                try:
                    status = client.post("/predict", json={"features": SETOSA}).status_code
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.result.errors[type(exc).__name__] += 1
                    continue
                with self._lock:
                    self.result.statuses[status] += 1

    def finish(self, timeout_s: float = 120) -> None:
        """Wait until the request budget (or the time bound) is spent."""
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0.0))

    def wait_for(self, requests: int, timeout_s: float = 60) -> None:
        """Wait until at least ``requests`` more requests have completed."""
        target = self.result.sent + requests
        deadline = time.monotonic() + timeout_s
        while self.result.sent < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"load stalled at {self.result.sent} requests")
            time.sleep(0.05)
