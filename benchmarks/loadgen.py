"""wrk, the load generator: install it when missing, run it, read its JSON summary.

Every run is ``wrk -t1 -cN -dDs --latency -s SCRIPT URL -- ARGS``: bounded in time by ``-d``,
and the process itself is killed if it overruns that by a wide margin.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LUA_DIR = Path(__file__).resolve().parent / "lua"
_MARKER = "WRK_JSON "
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class LoadgenError(RuntimeError):
    """wrk is missing, failed, or printed no summary."""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run, reduced to what the report needs."""

    requests: int
    duration_s: float
    errors: dict[str, int]
    latency_ms: dict[str, float]
    rows_per_request: int

    @property
    def error_total(self) -> int:
        """Non-2xx responses plus socket errors (connect, read, write, timeout)."""
        return sum(self.errors.values())

    @property
    def ok_requests(self) -> int:
        return max(self.requests - self.errors.get("status", 0), 0)

    @property
    def rps(self) -> float:
        """Successful (2xx/3xx) responses per second: fast refusals do not count as work."""
        return self.ok_requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def rows_per_s(self) -> float:
        return self.rps * self.rows_per_request

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "duration_s": round(self.duration_s, 3),
            "rps": round(self.rps, 1),
            "rows_per_s": round(self.rows_per_s, 1),
            "latency_ms": self.latency_ms,
            "errors": self.errors,
            "error_total": self.error_total,
        }


@dataclass
class WrkJob:
    """A wrk process under way; :meth:`result` waits for it."""

    proc: subprocess.Popen[str]
    duration_s: float
    rows_per_request: int
    argv: list[str] = field(default_factory=list)

    def result(self) -> WrkResult:
        try:
            out, err = self.proc.communicate(timeout=self.duration_s + 60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise LoadgenError(f"wrk overran its duration: {' '.join(self.argv)}") from None
        if self.proc.returncode != 0:
            raise LoadgenError(f"wrk exited {self.proc.returncode}: {err.strip() or out.strip()}")
        return parse_output(out, self.rows_per_request)


def ensure_wrk() -> str:
    """Path of wrk; installs Debian's package (as root) when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise LoadgenError("wrk is not installed and we are not root: apt-get install -y wrk")
    print("wrk not found: installing Debian's package (apt-get install -y wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        # A fresh machine has no package lists yet; fetch them once and retry.
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    found = shutil.which("wrk")
    if done.returncode != 0 or not found:
        raise LoadgenError(f"could not install wrk: {done.stderr.strip()[-500:]}")
    return found


def wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def start_wrk(
    wrk: str,
    url: str,
    script: str,
    script_args: list[str],
    connections: int,
    duration_s: float,
    rows_per_request: int = 1,
    timeout_s: float = 5.0,
) -> WrkJob:
    """Start ``wrk -t1 -cN -dDs --latency`` against a loopback URL, without waiting."""
    if urlsplit(url).hostname not in _LOOPBACK:
        raise LoadgenError(f"refusing to load a non-loopback address: {url}")
    argv = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(round(duration_s), 1)}s",
        f"--timeout={max(round(timeout_s), 1)}s",
        "--latency",
        "-s",
        str(LUA_DIR / script),
        url,
    ]
    if script_args:
        argv += ["--", *script_args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return WrkJob(proc=proc, duration_s=duration_s, rows_per_request=rows_per_request, argv=argv)


def run_wrk(
    wrk: str,
    url: str,
    script: str,
    script_args: list[str],
    connections: int,
    duration_s: float,
    rows_per_request: int = 1,
) -> WrkResult:
    """Run wrk to completion and return its summary."""
    job = start_wrk(wrk, url, script, script_args, connections, duration_s, rows_per_request)
    return job.result()


def parse_output(out: str, rows_per_request: int) -> WrkResult:
    """Read the WRK_JSON line that ``lua/common.lua``'s ``done()`` prints."""
    line = next((ln for ln in out.splitlines() if ln.startswith(_MARKER)), None)
    if line is None:
        raise LoadgenError(f"wrk printed no summary:\n{out[-1000:]}")
    data = json.loads(line[len(_MARKER) :])
    pct = data["latency_us"]["percentiles"]
    latency_ms = {
        "p50": pct["50"] / 1000,
        "p90": pct["90"] / 1000,
        "p95": pct["95"] / 1000,
        "p99": pct["99"] / 1000,
        "max": data["latency_us"]["max"] / 1000,
        "mean": data["latency_us"]["mean"] / 1000,
    }
    return WrkResult(
        requests=int(data["requests"]),
        duration_s=data["duration_us"] / 1e6,
        errors={k: int(v) for k, v in data["errors"].items()},
        latency_ms={k: round(v, 3) for k, v in latency_ms.items()},
        rows_per_request=rows_per_request,
    )
