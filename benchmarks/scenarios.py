"""Scenarios: start a server, check it answers, warm it up, measure it with wrk.

Each measurement becomes a :class:`ScenarioResult` with an id of the form
``server/model/kind/cN`` (``modelserve-batched/forest/predict/c64``) that the report reads.
A server that cannot start, or a scenario whose first request fails, is recorded with the
reason instead of a number.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.cpu import CpuMeter, group_cpu_s
from benchmarks.loadgen import WrkResult, run_wrk, start_wrk
from benchmarks.processes import ServerProcess, http_request, start_server
from benchmarks.servers import ServerSpec


@dataclass
class ScenarioResult:
    """One measured (or failed) scenario."""

    id: str
    server: str
    server_label: str
    model: str
    kind: str
    """``predict``, ``predict-batch`` or ``health-under-load``."""
    connections: int
    rows_per_request: int
    status: str = "ok"
    """``ok`` or ``failed`` (then ``note`` says why)."""
    wrk: WrkResult | None = None
    load: WrkResult | None = None
    """For ``health-under-load``: the saturating /predict run beside the /health run."""
    load_connections: int = 0
    other_cpu_cores: float | None = None
    """CPU used by processes other than the server, wrk and the harness while measuring."""
    repeats: list[float] = field(default_factory=list)
    """With ``--repeats N``: every run's req/s (or /health p99 ms); the median run is kept."""
    server_cpu_us_per_request: float | None = None
    """The server's CPU time (its process group, user + system) per 2xx answer over all
    runs; not for ``health-under-load``, where another load shares the server."""
    in_process_rows_per_s: dict[str, float] | None = None
    """For batch scenarios: the in-process ceiling timed right before and after this run."""
    health_port: str = ""
    """For ``health-under-load``: ``probe`` (modelserve's probe listener) or ``main``."""
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "server": self.server,
            "server_label": self.server_label,
            "model": self.model,
            "kind": self.kind,
            "connections": self.connections,
            "rows_per_request": self.rows_per_request,
            "status": self.status,
            "note": self.note,
            "other_cpu_cores": (
                None if self.other_cpu_cores is None else round(self.other_cpu_cores, 2)
            ),
            "server_cpu_us_per_request": self.server_cpu_us_per_request,
            "result": self.wrk.summary() if self.wrk else None,
            "repeats": [round(v, 3) if math.isfinite(v) else None for v in self.repeats],
        }
        if self.in_process_rows_per_s is not None:
            out["in_process_rows_per_s"] = self.in_process_rows_per_s
        if self.kind == "health-under-load":
            out["load_connections"] = self.load_connections
            out["health_port"] = self.health_port
            out["load_result"] = self.load.summary() if self.load else None
        return out


@dataclass
class Runner:
    """Runs scenarios against servers and collects their results."""

    wrk: str
    rows_csv: Path
    log_dir: Path
    duration_s: float
    warmup_s: float
    ready_timeout_s: float = 120.0
    repeats: int = 1
    results: list[ScenarioResult] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    response_samples: dict[str, bytes] = field(default_factory=dict)
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    _pgid: int | None = None

    @contextlib.contextmanager
    def serve(self, spec: ServerSpec) -> Iterator[ServerProcess]:
        """Start ``spec``, wait until it is ready, yield it, stop it (SIGTERM, then wait)."""
        name = spec.key if len(spec.models) > 1 else f"{spec.key}-{spec.models[0]}"
        print(f"starting {spec.label} on port {spec.port} (log: {self.log_dir / name}.log)")
        server = start_server(name, spec.argv, spec.port, self.log_dir, spec.env, spec.cwd)
        try:
            started = time.monotonic()
            server.wait_ready(spec.ready_path, self.ready_timeout_s)
            for path in spec.extra_ready_paths:
                server.wait_ready(path, self.ready_timeout_s)
            print(f"  ready after {time.monotonic() - started:.1f} s")
            self._pgid = server.proc.pid  # the server leads its own process group
            yield server
        finally:
            self._pgid = None
            self.exit_codes[name] = server.stop()

    def skip(self, what: str, reason: str) -> None:
        print(f"SKIPPED {what}: {reason}")
        self.skipped.append({"what": what, "reason": reason})

    def _record(self, result: ScenarioResult) -> ScenarioResult:
        self.results.append(result)
        if result.status != "ok":
            print(f"  {result.id}: FAILED {result.note}")
        elif result.wrk is not None:
            r = result.wrk
            extra = ""
            if result.repeats:
                extra = f" | median of {len(result.repeats)} runs: {format_runs(result)}"
            if result.server_cpu_us_per_request is not None:
                extra += f" | server CPU {result.server_cpu_us_per_request:,.0f} us/request"
            if result.other_cpu_cores is not None:
                extra += f" | other processes: {result.other_cpu_cores:.2f} cores"
            if result.load is not None:
                answers = (
                    f"p50 {r.latency_ms['p50']:.2f} ms, p99 {r.latency_ms['p99']:.2f} ms"
                    if r.requests
                    else f"no answer in {r.duration_s:.0f} s"
                )
                print(
                    f"  {result.id}: /health {r.requests:,} answers, {answers}, errors "
                    f"{r.error_total} | /predict under it: {result.load.rps:,.0f} rps{extra}"
                )
            else:
                print(
                    f"  {result.id}: {r.rps:,.0f} rps, {r.rows_per_s:,.0f} rows/s, "
                    f"p50 {r.latency_ms['p50']:.2f} ms, p99 {r.latency_ms['p99']:.2f} ms, "
                    f"errors {r.error_total}{extra}"
                )
        return result

    def _preflight(
        self, port: int, path: str, body: bytes, timeout_s: float = 15.0
    ) -> tuple[bool, bytes, str]:
        """One real request must answer 200 before a server is measured.

        A 503 is retried until ``timeout_s``: wrk stops mid-request, and a server may still
        be computing (and queueing) what the previous run abandoned.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                status, answer = http_request(port, "POST", path, body, timeout_s=30.0)
            except OSError as exc:
                return False, b"", f"first request failed: {exc!r}"
            if status == 200:
                return True, answer, ""
            if status != 503 or time.monotonic() > deadline:
                return False, answer, f"first request answered {status}: {answer[:300]!r}"
            time.sleep(0.1)

    def _warm_up(
        self, spec: ServerSpec, path: str, body: bytes, script: str, args: list[str], conns: int
    ) -> None:
        if self.warmup_s > 0:
            url = f"http://127.0.0.1:{spec.port}{path}"
            run_wrk(self.wrk, url, script, args, conns, self.warmup_s)
            time.sleep(0.3)
            self._preflight(spec.port, path, body)

    def _median_run(
        self,
        result: ScenarioResult,
        once: Callable[[], tuple[WrkResult, WrkResult | None]],
        metric: Callable[[WrkResult], float],
        settle: Callable[[], object],
    ) -> None:
        """Measure ``self.repeats`` times; keep the run whose ``metric`` is the median."""
        runs: list[tuple[WrkResult, WrkResult | None, float | None]] = []
        server_cpu_s, answered = 0.0, 0
        for i in range(self.repeats):
            if i:
                time.sleep(0.3)
                settle()
            meter = CpuMeter(self._pgid)
            meter.start()
            before = group_cpu_s(self._pgid) if self._pgid else None
            main, load = once()
            if before is not None and self._pgid:
                server_cpu_s += group_cpu_s(self._pgid) - before
                answered += main.ok_requests
            runs.append((main, load, meter.stop()))
        if answered and runs[0][1] is None:
            result.server_cpu_us_per_request = round(server_cpu_s / answered * 1e6, 1)
        ranked = sorted(runs, key=lambda run: metric(run[0]))
        result.wrk, result.load, result.other_cpu_cores = ranked[(len(ranked) - 1) // 2]
        if self.repeats > 1:
            result.repeats = [metric(run[0]) for run in runs]

    def predict(self, spec: ServerSpec, model: str, connections: int) -> ScenarioResult:
        """Single-row POSTs at ``connections`` concurrent connections."""
        path = spec.path_for(model)
        result = ScenarioResult(
            id=f"{spec.key}/{model}/predict/c{connections}",
            server=spec.key,
            server_label=spec.label,
            model=model,
            kind="predict",
            connections=connections,
            rows_per_request=1,
        )
        ok, answer, why = self._preflight(spec.port, path, spec.sample_body)
        if not ok:
            result.status, result.note = "failed", why
            return self._record(result)
        self.response_samples.setdefault(f"{spec.key}/{model}", answer)
        url = f"http://127.0.0.1:{spec.port}{path}"
        args = [str(self.rows_csv), path]
        self._warm_up(spec, path, spec.sample_body, spec.predict_script, args, connections)

        def once() -> tuple[WrkResult, None]:
            script = spec.predict_script
            return run_wrk(self.wrk, url, script, args, connections, self.duration_s), None

        def settle() -> object:
            return self._preflight(spec.port, path, spec.sample_body)

        self._median_run(result, once, _rps, settle)
        return self._record(result)

    def predict_batch(
        self, spec: ServerSpec, model: str, connections: int, rows: int
    ) -> ScenarioResult:
        """``rows``-row batch POSTs at ``connections`` concurrent connections."""
        if spec.batch_path is None:
            raise ValueError(f"{spec.key} has no batch route")
        path = spec.batch_path.format(model=model)
        result = ScenarioResult(
            id=f"{spec.key}/{model}/predict-batch-{rows}/c{connections}",
            server=spec.key,
            server_label=spec.label,
            model=model,
            kind="predict-batch",
            connections=connections,
            rows_per_request=rows,
        )
        lines = self.rows_csv.read_text(encoding="utf-8").splitlines()[:rows]
        body = json.dumps({"batch": [[float(v) for v in ln.split(",")] for ln in lines]})
        ok, _, why = self._preflight(spec.port, path, body.encode())
        if not ok:
            result.status, result.note = "failed", why
            return self._record(result)
        url = f"http://127.0.0.1:{spec.port}{path}"
        args = [str(self.rows_csv), path, str(rows)]
        self._warm_up(spec, path, body.encode(), "batch.lua", args, connections)

        def once() -> tuple[WrkResult, None]:
            duration = self.duration_s
            return run_wrk(self.wrk, url, "batch.lua", args, connections, duration, rows), None

        def settle() -> object:
            return self._preflight(spec.port, path, body.encode())

        self._median_run(result, once, _rps, settle)
        return self._record(result)

    def health_under_load(
        self,
        spec: ServerSpec,
        model: str,
        load_connections: int,
        health_connections: int,
        on_probe_port: bool = False,
    ) -> ScenarioResult:
        """GET /health at a few connections while /predict is saturated by a second wrk, on
        the serving port or (``on_probe_port``) on the spec's probe listener."""
        path = spec.path_for(model)
        health_port = "probe" if on_probe_port else "main"
        result = ScenarioResult(
            id=f"{spec.key}/{model}/health-under-load/{health_port}-port/c{health_connections}",
            server=spec.key,
            server_label=spec.label,
            model=model,
            kind="health-under-load",
            connections=health_connections,
            rows_per_request=0,
            load_connections=load_connections,
            health_port=health_port,
        )
        if on_probe_port and spec.probe_port is None:
            result.status, result.note = "failed", "the server has no probe port"
            return self._record(result)
        ok, _, why = self._preflight(spec.port, path, spec.sample_body)
        if not ok:
            result.status, result.note = "failed", why
            return self._record(result)
        url = f"http://127.0.0.1:{spec.port}{path}"
        args = [str(self.rows_csv), path]
        self._warm_up(spec, path, spec.sample_body, spec.predict_script, args, load_connections)
        health_url = f"http://127.0.0.1:{spec.probe_port if on_probe_port else spec.port}/health"

        def once() -> tuple[WrkResult, WrkResult]:
            # The load runs 2 s longer and /health starts 1 s in, so the whole /health
            # window sees a saturated server.
            load = start_wrk(
                self.wrk, url, spec.predict_script, args, load_connections, self.duration_s + 2
            )
            try:
                time.sleep(1.0)
                health = run_wrk(
                    self.wrk, health_url, "get.lua", [], health_connections, self.duration_s
                )
            finally:
                loaded = load.result()
            return health, loaded

        def settle() -> object:
            return self._preflight(spec.port, path, spec.sample_body)

        self._median_run(result, once, _health_p99, settle)
        return self._record(result)


def format_runs(result: ScenarioResult) -> str:
    """Every run's figure (req/s, or /health p99 ms), in the order measured."""
    unit = " ms" if result.kind == "health-under-load" else ""
    return (
        " / ".join(
            "none" if not math.isfinite(v) else f"{v:,.{2 if unit else 0}f}" for v in result.repeats
        )
        + unit
    )


def _rps(run: WrkResult) -> float:
    return run.rps


def _health_p99(run: WrkResult) -> float:
    # No answer at all in the window ranks worst.
    return run.latency_ms["p99"] if run.requests else float("inf")
