"""The shipped nginx retry rules, against an upstream that resets every connection after
reading the request (what a stopping replica's kernel does to its accept backlog): a
prediction is passed to the healthy replica, an admin call is not (it might be applied twice)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import struct
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import iris_versions as iv
from tests.cluster.conftest import OPS_KEY, Fleet, Nginx

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(300)]

ADMIN = {"Authorization": f"Bearer {OPS_KEY}", "Content-Type": "application/json"}


class ResettingUpstream:
    """Accepts connections on loopback, reads a request's head, then resets the connection."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self.received: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ResettingUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._sock.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(5)
                head = b""
                with contextlib.suppress(OSError):
                    while b"\r\n\r\n" not in head and len(head) < 65536:
                        chunk = connection.recv(4096)
                        if not chunk:
                            break
                        head += chunk
                if head:
                    self.received[head.split(b" ", 2)[1].decode()] += 1
                # Linger 0: close() sends RST, as the kernel does to a closing backlog.
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.fixture
def reset_and_replica(fleet: Fleet) -> Iterator[tuple[Nginx, ResettingUpstream]]:
    """nginx over the resetting upstream and replica a, with passive checks off so the
    resetting one stays in the rotation."""
    with ResettingUpstream() as upstream:
        directory = Path(tempfile.mkdtemp(prefix="modelserve-nginx-"))
        nginx = Nginx(directory, [upstream.port, fleet.replicas[0].port], "max_fails=0")
        try:
            nginx.start()
            yield nginx, upstream
        finally:
            nginx.stop()
            shutil.rmtree(directory, ignore_errors=True)


def test_nginx_passes_on_predictions_but_not_admin_calls_after_a_reset(
    reset_and_replica: tuple[Nginx, ResettingUpstream],
) -> None:
    """Every prediction is answered 200 although round robin sends some first to the
    resetting upstream; every admin POST that reached it fails with 502, never passed on."""
    nginx, upstream = reset_and_replica
    predictions, admin = Counter[int](), Counter[int]()
    # One kind at a time: round robin then sends each kind first to both upstreams.
    for _ in range(8):
        response = httpx.post(
            nginx.base_url + "/predict", json={"features": iv.SETOSA_ROW}, headers=ADMIN, timeout=20
        )
        predictions[response.status_code] += 1
    for _ in range(8):
        response = httpx.post(
            nginx.base_url + "/v2/repository/index", json={}, headers=ADMIN, timeout=20
        )
        admin[response.status_code] += 1
    print(
        f"\nresetting upstream received {dict(upstream.received)}; "
        f"predictions {dict(predictions)}, admin POSTs {dict(admin)}"
    )
    assert upstream.received["/predict"] > 0
    assert predictions == Counter({200: 8})
    assert upstream.received["/v2/repository/index"] > 0
    assert admin[502] == upstream.received["/v2/repository/index"]
    assert admin[200] == 8 - admin[502]
