"""How long the largest accepted request body holds the event loop, and what it costs in RSS.

Starts ``modelserve serve`` on a config, sends one body of ``--bytes`` bytes while ``/health``
is polled back to back, and prints the slowest ``/health`` answer during the upload and
parse, the response status, and the server's RSS before and at its peak (``VmHWM``). Shapes:
``rows`` is ``{"batch": [[1], [1], ...]}`` (most JSON values per byte), ``wide`` is one row
of many numbers, ``{"batch": [[1, 1, ...]]}`` (all of it must be parsed)::

    python -m benchmarks.body_stall --config models/modelserve.yaml --bytes 8388608
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from benchmarks.processes import free_port


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _body(size: int, shape: str) -> bytes:
    head, item, tail = (
        (b'{"batch": [', b"[1],", b"[1]]}")
        if shape == "rows"
        else (b'{"batch": [[', b"1,", b"1]]}")
    )
    return head + item * max(0, (size - len(head) - len(tail)) // len(item)) + tail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--bytes", type=int, required=True, help="body size to send")
    parser.add_argument("--shape", choices=["rows", "wide"], default="rows")
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "modelserve", "serve", "--config", str(args.config)]
    proc = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise SystemExit("server not ready")
        rss_before = _status_kib(proc.pid, "VmRSS")
        body = _body(args.bytes, args.shape)
        done = threading.Event()
        status: list[int] = []

        def send() -> None:
            response = httpx.post(
                url + "/predict-batch",
                content=body,
                headers={"Content-Type": "application/json"},
                timeout=120,
            )
            status.append(response.status_code)
            done.set()

        worst = 0.0
        with httpx.Client(base_url=url, timeout=30) as probe:
            probe.get("/health")
            sender = threading.Thread(target=send)
            sender.start()
            while not done.is_set():
                started = time.perf_counter()
                probe.get("/health")
                worst = max(worst, time.perf_counter() - started)
            sender.join()
        print(
            f"body {len(body)} bytes -> {status[0]}; slowest /health during it "
            f"{worst * 1000:.1f} ms; RSS {rss_before / 1024:.0f} MB before, "
            f"peak {_status_kib(proc.pid, 'VmHWM') / 1024:.0f} MB"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
