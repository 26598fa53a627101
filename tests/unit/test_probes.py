"""The probe listener and its answers, over a real loopback socket."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest
from structlog.testing import capture_logs

from modelserve import probes
from modelserve.api.auth import ApiKeyring, AuthGate
from modelserve.api.lockout import FailedAuthLimiter
from modelserve.probe_process import MetricsFile, MetricsRenderer
from modelserve.probes import (
    MAX_HEADER_BYTES,
    KeptRendering,
    ProbeAnswers,
    ProbeListener,
    ProbeSnapshot,
    SnapshotDirectory,
    gate_authorizer,
)
from modelserve.settings import ApiKeyConfig, AuthSettings

STALL_S = 30.0
METRICS = (b"# metrics\n", "text/plain; version=0.0.4")


class SnapshotHolder:
    """The latest snapshot, published by the test."""

    def __init__(self) -> None:
        self.latest: ProbeSnapshot | None = None

    def publish(self, latest: ProbeSnapshot) -> None:
        self.latest = latest

    def read(self) -> list[ProbeSnapshot] | None:
        return None if self.latest is None else [self.latest]


def snapshot(pid: int = 1, ready: bool = True, age_s: float = 0.0) -> ProbeSnapshot:
    return ProbeSnapshot(
        pid=pid,
        ready=ready,
        reasons=[] if ready else ["iris:1 is loading"],
        draining=False,
        models={"iris:1": "ready" if ready else "loading"},
        uptime_s=1.0,
        published_at=time.time() - age_s,
    )


def answers_for(
    snapshots: list[ProbeSnapshot] | None, expected: int = 1, metrics: bool = True
) -> ProbeAnswers:
    return ProbeAnswers(
        lambda: snapshots,
        expected=expected,
        stall_s=STALL_S,
        metrics=(lambda: METRICS) if metrics else None,
    )


@pytest.fixture
def holder() -> SnapshotHolder:
    return SnapshotHolder()


@pytest.fixture
def listener(holder: SnapshotHolder) -> Iterator[ProbeListener]:
    answers = ProbeAnswers(holder.read, expected=1, stall_s=STALL_S, metrics=lambda: METRICS)
    running = ProbeListener("127.0.0.1", 0, answers)
    running.start()
    yield running
    running.stop()


def test_answers_health_is_503_until_a_snapshot_is_published() -> None:
    """A process that has not ticked yet is starting, not alive."""
    answer = answers_for(None).health()
    assert (answer.status, orjson.loads(answer.body)["status"]) == (503, "starting")


def test_answers_health_fails_when_the_only_process_stalls() -> None:
    """One process whose loop stopped publishing fails liveness."""
    answer = answers_for([snapshot(age_s=STALL_S + 1)]).health()
    assert (answer.status, orjson.loads(answer.body)["status"]) == (503, "stalled")


def test_answers_ready_needs_every_expected_worker() -> None:
    """With two workers expected and one reporting, readiness says how many are ready."""
    answer = answers_for([snapshot(pid=1)], expected=2).ready()
    assert answer.status == 503
    assert orjson.loads(answer.body)["detail"] == "1 of 2 workers ready"


def test_answers_ready_when_every_worker_is_ready() -> None:
    """Two fresh ready workers: 200."""
    answer = answers_for([snapshot(pid=1), snapshot(pid=2)], expected=2).ready()
    assert (answer.status, orjson.loads(answer.body)["workers"]) == (200, 2)


@pytest.mark.parametrize(
    ("ready", "age_s", "reason"),
    [(False, 0.0, "iris:1 is loading"), (True, STALL_S + 1, "worker 1 has not reported for 30 s")],
    ids=["not-ready", "stale"],
)
def test_answers_ready_names_the_reason(ready: bool, age_s: float, reason: str) -> None:
    """A worker that is not ready, or silent too long, fails readiness with the reason."""
    answer = answers_for([snapshot(ready=ready, age_s=age_s)]).ready()
    assert (answer.status, orjson.loads(answer.body)["detail"]) == (503, reason)


def test_answers_metrics_404_when_disabled() -> None:
    """Without metrics the probe port does not serve /metrics."""
    answer = answers_for([snapshot()], metrics=False).answer("/metrics")
    assert answer is not None
    assert answer.status == 404


def test_listener_serves_the_published_snapshot(
    listener: ProbeListener, holder: SnapshotHolder
) -> None:
    """GET /health and /ready over HTTP reflect the latest published snapshot."""
    url = f"http://127.0.0.1:{listener.port}"
    assert httpx.get(url + "/ready", timeout=5).status_code == 503
    holder.publish(snapshot())
    health = httpx.get(url + "/health", timeout=5)
    assert (health.status_code, health.json()["models"]) == (200, {"iris:1": "ready"})
    assert health.headers["connection"] == "close"
    assert httpx.get(url + "/ready", timeout=5).json()["ready"] is True


def test_listener_serves_metrics(listener: ProbeListener) -> None:
    """/metrics answers with the exposition text and its content type."""
    response = httpx.get(f"http://127.0.0.1:{listener.port}/metrics", timeout=5)
    assert (response.status_code, response.text) == (200, "# metrics\n")
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"POST /health HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"GET /predict HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"nonsense\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nX: " + b"a" * MAX_HEADER_BYTES * 2 + b"\r\n\r\n", 400),
    ],
    ids=["post", "unknown-path", "garbage", "oversized-head"],
)
def test_listener_refuses_what_is_not_a_probe(
    listener: ProbeListener, request_head: bytes, status: int
) -> None:
    """Other methods, paths and malformed heads get a JSON error, and the listener lives on."""
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as conn:
        conn.sendall(request_head)
        reply = conn.recv(65536)
    assert reply.startswith(f"HTTP/1.1 {status} ".encode())
    assert httpx.get(f"http://127.0.0.1:{listener.port}/health", timeout=5).status_code == 503


def test_listener_keeps_answering_while_a_client_sends_nothing(listener: ProbeListener) -> None:
    """A connection that never sends its request head does not block other probes."""
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5):
        response = httpx.get(f"http://127.0.0.1:{listener.port}/metrics", timeout=5)
    assert response.status_code == 200


def test_listener_applies_protect_probes(holder: SnapshotHolder) -> None:
    """With protect_probes a probe needs a valid key: 401 without, 200 with."""
    auth = AuthSettings(
        enabled=True,
        protect_probes=True,
        keys=[ApiKeyConfig(name="ops", key="s3cret-probe-key", scopes=["predict"])],
    )
    holder.publish(snapshot())
    answers = ProbeAnswers(holder.read, expected=1, stall_s=STALL_S, metrics=None)
    gate = AuthGate(ApiKeyring(auth), FailedAuthLimiter(auth.failed_auth_limit))
    running = ProbeListener("127.0.0.1", 0, answers, gate_authorizer(gate))
    running.start()
    try:
        url = f"http://127.0.0.1:{running.port}/health"
        refused = httpx.get(url, timeout=5)
        assert (refused.status_code, refused.json()["code"]) == (401, "unauthorized")
        assert refused.headers["www-authenticate"] == "Bearer"
        headers = {"Authorization": "Bearer s3cret-probe-key"}
        assert httpx.get(url, headers=headers, timeout=5).status_code == 200
    finally:
        running.stop()


def test_listener_holds_a_scrape_until_a_rendering_is_fresh(holder: SnapshotHolder) -> None:
    """A scrape that finds no fresh rendering is answered once one is there, and probes
    that arrive meanwhile are answered at once."""
    fresh = threading.Event()
    answers = ProbeAnswers(
        holder.read,
        expected=1,
        stall_s=STALL_S,
        metrics=lambda: METRICS if fresh.is_set() else None,
    )
    running = ProbeListener("127.0.0.1", 0, answers)
    running.start()
    try:
        with ThreadPoolExecutor(1) as pool:
            scrape = pool.submit(httpx.get, f"http://127.0.0.1:{running.port}/metrics", timeout=5)
            health = httpx.get(f"http://127.0.0.1:{running.port}/health", timeout=5)
            assert (health.status_code, scrape.done()) == (503, False)
            fresh.set()
            assert (scrape.result().status_code, scrape.result().text) == (200, "# metrics\n")
    finally:
        running.stop()


def test_listener_gives_up_a_held_scrape_with_a_503(
    holder: SnapshotHolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No fresh rendering within the limit: 503 ``metrics_unavailable``, never a hang."""
    monkeypatch.setattr(probes, "DEFER_LIMIT_S", 0.2)
    answers = ProbeAnswers(holder.read, expected=1, stall_s=STALL_S, metrics=lambda: None)
    running = ProbeListener("127.0.0.1", 0, answers)
    running.start()
    try:
        response = httpx.get(f"http://127.0.0.1:{running.port}/metrics", timeout=5)
        assert (response.status_code, response.json()["code"]) == (503, "metrics_unavailable")
    finally:
        running.stop()


def test_metrics_renderer_writes_only_while_scraped(tmp_path: Path) -> None:
    """The serving process renders into the shared file once a scrape asked for it; the
    probe process then reads that rendering."""
    file = MetricsFile(tmp_path)
    renderer = MetricsRenderer(lambda: METRICS, file)
    renderer.start()
    try:
        assert not (tmp_path / "metrics.prom").exists()
        assert file.read() is None  # asks for a rendering
        deadline = time.monotonic() + 10
        while file.read() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert file.read() == METRICS
    finally:
        renderer.stop()


def test_kept_rendering_keeps_the_last_good_one_and_logs_a_failure_once() -> None:
    """A failing render leaves the sink with the last good rendering and logs one line until
    rendering works again; the next failure after that is logged again."""
    outcomes: list[tuple[bytes, str] | None] = [METRICS, None, None, METRICS, None]
    sunk: list[tuple[bytes, str]] = []

    def render() -> tuple[bytes, str]:
        outcome = outcomes.pop(0)
        if outcome is None:
            raise RuntimeError("collector failed")
        return outcome

    rendering = KeptRendering(render, lambda body, content_type: sunk.append((body, content_type)))
    with capture_logs() as logs:
        for _ in range(5):
            rendering.refresh()
    assert sunk == [METRICS, METRICS]
    assert [entry["event"] for entry in logs] == ["metrics_render_failed"] * 2


def test_snapshot_directory_reads_only_live_workers(tmp_path: Path) -> None:
    """Files of workers that are gone are ignored; forget() removes a worker's file."""
    directory = SnapshotDirectory(tmp_path)
    SnapshotDirectory(tmp_path).publish(snapshot(pid=11))
    SnapshotDirectory(tmp_path).publish(snapshot(pid=12))
    assert [s.pid for s in directory.read({11, 13})] == [11]
    directory.forget(11)
    assert directory.read({11, 12}) == [directory.read({12})[0]]


def test_snapshot_directory_parses_a_snapshot_once_and_a_replaced_one_again(
    tmp_path: Path,
) -> None:
    """An unchanged file (same inode, modification time and size) is not read again, even if
    its bytes were changed in place; a published replacement is read at once."""
    writer, reader = SnapshotDirectory(tmp_path), SnapshotDirectory(tmp_path)
    writer.publish(snapshot(pid=21, ready=False))
    assert [s.ready for s in reader.read({21})] == [False]
    path = tmp_path / "worker-21.json"
    before = path.stat()
    path.write_bytes(path.read_bytes().replace(b'"ready":false', b'"ready":true '))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert [s.ready for s in reader.read({21})] == [False]  # kept: no read, no parse
    writer.publish(snapshot(pid=21, ready=True))
    assert [s.ready for s in reader.read({21})] == [True]


def test_listener_sends_an_answer_larger_than_the_socket_buffer(holder: SnapshotHolder) -> None:
    """A /metrics text of several megabytes (more than one send takes) arrives whole."""
    body = b"# metrics\n" + b"modelserve_x_total 1\n" * 200_000
    answers = ProbeAnswers(
        holder.read, expected=1, stall_s=STALL_S, metrics=lambda: (body, METRICS[1])
    )
    running = ProbeListener("127.0.0.1", 0, answers)
    running.start()
    try:
        response = httpx.get(f"http://127.0.0.1:{running.port}/metrics", timeout=10)
    finally:
        running.stop()
    assert (response.status_code, len(response.content)) == (200, len(body))
