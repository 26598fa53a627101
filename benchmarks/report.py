"""Ratios, targets and the written results (``latest.md`` and ``latest.json``).

Every ratio divides two numbers measured in the same run, on the same machine, minutes
apart: absolute figures move ±25 % between runs here, ratios much less. Targets are reported
as PASS/FAIL lines; nothing asserts them. A ratio whose inputs were not measured is N/A with
the reason, never a guess.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import v2
from benchmarks.scenarios import ScenarioResult, format_runs

PEERS = ("litserve", "mlserver")
MODELSERVE = "modelserve-batched"
FORMATS = "modelserve-formats"


@dataclass(frozen=True)
class Target:
    name: str
    passed: bool | None
    """None: not measured (N/A)."""
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


class _Lookup:
    def __init__(self, results: list[ScenarioResult]) -> None:
        self.by_id = {r.id: r for r in results if r.status == "ok" and r.wrk is not None}

    def get(self, rid: str) -> ScenarioResult | None:
        return self.by_id.get(rid)

    def rps(self, rid: str) -> float | None:
        r = self.get(rid)
        return r.wrk.rps if r and r.wrk else None

    def rows_per_s(self, rid: str) -> float | None:
        r = self.get(rid)
        return r.wrk.rows_per_s if r and r.wrk else None

    def latency(self, rid: str, key: str) -> float | None:
        r = self.get(rid)
        return r.wrk.latency_ms[key] if r and r.wrk else None

    def errors(self, *rids: str) -> int:
        return sum(r.wrk.error_total for rid in rids if (r := self.get(rid)) and r.wrk)


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def compute_ratios(
    results: list[ScenarioResult], in_process: dict[str, dict[str, float]], batch_rows: int
) -> dict[str, Any]:
    """Same-run ratios (None where an input is missing)."""
    look = _Lookup(results)
    ratios: dict[str, Any] = {
        "logreg_c64_vs_noop": _div(
            look.rps(f"{MODELSERVE}/logreg/predict/c64"), look.rps("noop/logreg/predict/c64")
        ),
        "logreg_c64_unbatched_vs_noop": _div(
            look.rps("modelserve-unbatched/logreg/predict/c64"),
            look.rps("noop/logreg/predict/c64"),
        ),
    }
    ratios["forest_onnx_c64_vs_forest"] = _div(
        look.rps(f"{FORMATS}/forest-onnx/predict/c64"), look.rps(f"{FORMATS}/forest/predict/c64")
    )
    ratios["forest_onnx_c1_p50_vs_forest"] = _div(
        look.latency(f"{FORMATS}/forest-onnx/predict/c1", "p50"),
        look.latency(f"{FORMATS}/forest/predict/c1", "p50"),
    )
    for model in ("logreg", "forest"):
        ms = look.rps(f"{MODELSERVE}/{model}/predict/c64")
        ratios[f"{model}_c64_batched_vs_unbatched"] = _div(
            ms, look.rps(f"modelserve-unbatched/{model}/predict/c64")
        )
        ratios[f"{model}_c64_vs_naive"] = _div(ms, look.rps(f"naive/{model}/predict/c64"))
        peer_rps = {p: look.rps(f"{p}/{model}/predict/c64") for p in PEERS}
        measured = {p: v for p, v in peer_rps.items() if v is not None}
        best = max(measured, key=lambda p: measured[p]) if measured else None
        ratios[f"{model}_c64_best_peer"] = best
        ratios[f"{model}_c64_vs_best_peer"] = _div(ms, measured[best]) if best else None
        ratios[f"{model}_c1_p50_vs_naive"] = _div(
            look.latency(f"{MODELSERVE}/{model}/predict/c1", "p50"),
            look.latency(f"naive/{model}/predict/c1", "p50"),
        )
        batch = next(
            (
                r
                for rid, r in look.by_id.items()
                if rid.startswith(f"{MODELSERVE}/{model}/predict-batch-{batch_rows}/")
            ),
            None,
        )
        beside = batch.in_process_rows_per_s if batch else None
        ratios[f"{model}_batch{batch_rows}_vs_in_process_64"] = _div(
            batch.wrk.rows_per_s if batch and batch.wrk else None,
            (beside or in_process.get(model, {})).get("64"),
        )
        for port, key in (("probe", "health"), ("main", "main_port_health")):
            ratios[f"{model}_{key}_p99_under_load_ms"] = _health_p99(look, model, port)
    return ratios


def _health_prefix(model: str, port: str) -> str:
    return f"{MODELSERVE}/{model}/health-under-load/{port}-port/"


def _health_p99(look: _Lookup, model: str, port: str) -> float | None:
    """/health p99 of ``model``'s saturated run on the ``probe`` or ``main`` port."""
    health = next(
        (r for rid, r in look.by_id.items() if rid.startswith(_health_prefix(model, port))), None
    )
    if health is None or health.wrk is None:
        return None
    if health.wrk.requests == 0:
        # No /health answer at all during the window: report it as the window's length,
        # a lower bound of the real p99 (and far over any target).
        return float(health.wrk.duration_s * 1000)
    return float(health.wrk.latency_ms["p99"])


def evaluate_targets(
    results: list[ScenarioResult],
    ratios: dict[str, Any],
    batch_rows: int,
    peers_requested: bool,
) -> list[Target]:
    """The issue's targets as PASS/FAIL/N/A lines. A run with errors does not pass."""
    look = _Lookup(results)
    targets: list[Target] = []

    def add(name: str, value: float | None, ok: bool, detail: str, *rids: str) -> None:
        if value is None:
            targets.append(Target(name, None, "not measured (see skipped/failed below)"))
            return
        errors = look.errors(*rids)
        if errors:
            ok, detail = False, f"{detail}; {errors} errors in the run"
        targets.append(Target(name, ok, detail))

    ms64 = f"{MODELSERVE}/logreg/predict/c64"
    value = ratios["logreg_c64_vs_noop"]
    if value is not None:
        stretch = "met" if value >= 0.85 else "not met"
        detail = f"{value:.2f} x ceiling (stretch 0.85: {stretch})"
    else:
        detail = ""
    add(
        "logreg single-row @64 conns ≥ 0.5 x no-op ceiling",
        value,
        value is not None and value >= 0.5,
        detail,
        ms64,
    )
    fr = f"{MODELSERVE}/forest/predict/c64"
    value = ratios["forest_c64_vs_best_peer"]
    if value is None and not peers_requested:
        targets.append(
            Target(
                "forest single-row @64 conns ≥ 3 x best peer",
                None,
                "peers not run (make bench PEERS=1)",
            )
        )
    else:
        add(
            "forest single-row @64 conns ≥ 3 x best peer",
            value,
            value is not None and value >= 3,
            f"{_fmt(value)} x {ratios['forest_c64_best_peer']}",
            fr,
        )
    value = ratios["forest_c64_vs_naive"]
    add(
        "forest single-row @64 conns ≥ 10 x naive",
        value,
        value is not None and value >= 10,
        f"{_fmt(value)} x naive",
        fr,
    )
    for model in ("logreg", "forest"):
        value = ratios[f"{model}_c1_p50_vs_naive"]
        ms_p50 = look.latency(f"{MODELSERVE}/{model}/predict/c1", "p50")
        naive_p50 = look.latency(f"naive/{model}/predict/c1", "p50")
        add(
            f"{model} p50 @1 conn no worse than naive",
            value,
            value is not None and value <= 1.0,
            f"{_fmt(ms_p50)} ms vs naive {_fmt(naive_p50)} ms ({_fmt(value)} x)",
            f"{MODELSERVE}/{model}/predict/c1",
        )
    for model in ("logreg", "forest"):
        value = ratios[f"{model}_batch{batch_rows}_vs_in_process_64"]
        rids = [
            rid
            for rid in look.by_id
            if rid.startswith(f"{MODELSERVE}/{model}/predict-batch-{batch_rows}/")
        ]
        add(
            f"{model} batch-{batch_rows} rows/s ≥ 0.5 x in-process rows/s (64-row batches)",
            value,
            value is not None and value >= 0.5,
            f"{_fmt(value)} x in-process",
            *rids,
        )
    for model in ("logreg", "forest"):
        value = ratios[f"{model}_health_p99_under_load_ms"]
        rids = [rid for rid in look.by_id if rid.startswith(_health_prefix(model, "probe"))]
        add(
            f"/health p99 < 10 ms on the probe port while {model} /predict is saturated",
            value,
            value is not None and value < 10,
            f"p99 {_fmt(value)} ms",
            *rids,
        )
    return targets


def open_inference_targets(measured: dict[str, Any] | None) -> list[Target]:
    """The Open Inference Protocol goals: V2 JSON single-row within 15 % of ``/predict`` at
    1 and N connections (medians of the same run), and 1000-row binary and gRPC raw at 0.8 x
    the in-process rows/s."""
    if not measured:
        return [Target("V2 JSON single-row within 15 % of /predict", None, "V2 not run")]
    by = {(r["scenario"], r["connections"]): r for r in measured["results"]}
    targets = []
    for (scenario, conns), r in sorted(by.items(), key=lambda item: item[0][1]):
        base = by.get(("predict", conns))
        if scenario != "v2-json" or base is None:
            continue
        ratio = r["rps"] / base["rps"] if base["rps"] else 0.0
        errors = r["errors"] + base["errors"]
        detail = f"{ratio:.2f} x /predict (medians {r['rps']:,.0f} / {base['rps']:,.0f} req/s)"
        targets.append(
            Target(
                f"V2 JSON single-row @{conns} conn(s) ≥ 0.85 x /predict",
                ratio >= 0.85 and not errors,
                detail + (f"; {errors} errors in the runs" if errors else ""),
            )
        )
    in_process = measured.get("in_process_rows_per_s_1000")
    for scenario in ("v2-binary-batch", "grpc-raw-batch"):
        found = [r for (name, _), r in by.items() if name == scenario]
        if not found or not in_process:
            continue
        ratio = found[0]["rows_per_s"] / in_process
        targets.append(
            Target(
                f"{scenario} rows/s ≥ 0.8 x in-process 1000-row rows/s",
                ratio >= 0.8 and not found[0]["errors"],
                f"{ratio:.2f} x in-process",
            )
        )
    return targets


def write_results(
    out_dir: Path,
    meta: dict[str, Any],
    in_process: dict[str, dict[str, float]],
    results: list[ScenarioResult],
    skipped: list[dict[str, str]],
    batch_rows: int,
    peers_requested: bool,
    open_inference: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``latest.json`` and ``latest.md`` into ``out_dir``."""
    ratios = compute_ratios(results, in_process, batch_rows)
    targets = evaluate_targets(results, ratios, batch_rows, peers_requested)
    targets += open_inference_targets(open_inference)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "meta": meta,
        "in_process_rows_per_s": in_process,
        "scenarios": [r.to_json() for r in results],
        "ratios": ratios,
        "targets": [t.to_json() for t in targets],
        "open_inference": open_inference,
        "skipped": skipped,
    }
    json_path = out_dir / "latest.json"
    json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    md_path = out_dir / "latest.md"
    text = render_markdown(meta, in_process, results, ratios, targets, skipped, batch_rows)
    if open_inference:
        text += "\n" + v2.markdown(open_inference)
    md_path.write_text(text, encoding="utf-8")
    return md_path, json_path


def _describe(key: str, batch_rows: int) -> str:
    """One line saying what a ratio divides by what."""
    model, _, rest = key.partition("_")
    ms = f"modelserve {model}"
    meanings = {
        "c64_vs_noop": f"{ms} req/s at 64 conns (batching on) / no-op ceiling",
        "c64_unbatched_vs_noop": f"{ms} req/s at 64 conns (batching off) / no-op ceiling",
        "c64_batched_vs_unbatched": f"{ms} req/s at 64 conns, batching on / off",
        "c64_vs_naive": f"{ms} req/s at 64 conns / naive FastAPI",
        "c64_best_peer": f"fastest peer for {model} at 64 conns",
        "c64_vs_best_peer": f"{ms} req/s at 64 conns / fastest peer",
        "c1_p50_vs_naive": f"{ms} p50 at 1 conn / naive p50 (lower is better)",
        f"batch{batch_rows}_vs_in_process_64": (
            f"{ms} /predict-batch ({batch_rows} rows) rows/s / in-process rows/s, 64-row batches"
        ),
        "health_p99_under_load_ms": (
            f"/health p99 in ms on the probe port (what the manifests probe) while {model} "
            "/predict is saturated"
        ),
        "main_port_health_p99_under_load_ms": (
            f"/health p99 in ms on the serving port while {model} /predict is saturated"
        ),
        "onnx_c64_vs_forest": "optimized forest (ONNX Runtime) req/s at 64 conns / original forest",
        "onnx_c1_p50_vs_forest": (
            "optimized forest p50 at 1 conn / original forest p50 (lower is better)"
        ),
    }
    return meanings.get(rest, "")


def _other(r: ScenarioResult) -> str:
    return "?" if r.other_cpu_cores is None else f"{r.other_cpu_cores:.2f}"


def _runs(r: ScenarioResult) -> str:
    return format_runs(r) if r.repeats else "1 run"


def _row(r: ScenarioResult) -> str:
    if r.status != "ok" or r.wrk is None:
        return f"| {r.server_label} | {r.model} | {r.connections} | failed: {r.note} |||||||||"
    w = r.wrk
    lat = w.latency_ms
    if w.requests == 0:
        return (
            f"| {r.server_label} | {r.model} | {r.connections} | 0 | 0 | no answer within "
            f"{w.duration_s:.0f} s |||| {w.error_total} | {_other(r)} | {_runs(r)} |"
        )
    return (
        f"| {r.server_label} | {r.model} | {r.connections} | {w.rps:,.0f} | {w.rows_per_s:,.0f} "
        f"| {lat['p50']:.2f} | {lat['p95']:.2f} | {lat['p99']:.2f} | {w.requests:,} "
        f"| {w.error_total} | {_other(r)} | {_runs(r)} |"
    )


_TABLE_HEAD = (
    "| server | model | conns | req/s (2xx) | rows/s | p50 ms | p95 ms | p99 ms | requests "
    "| errors | other CPU (cores) | runs (req/s) |"
    "\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)


def _loads(values: list[float] | None) -> str:
    return " / ".join(f"{v:.2f}" for v in values) if values else "unknown"


def _noise_line(results: list[ScenarioResult]) -> str:
    others = sorted(r.other_cpu_cores for r in results if r.other_cpu_cores is not None)
    if not others:
        return "CPU used by other processes during the runs: unknown."
    median = others[len(others) // 2]
    line = (
        f"CPU used by other processes while measuring: median {median:.2f}, "
        f"max {others[-1]:.2f} of {os.cpu_count()} cores (column *other CPU*)."
    )
    if others[-1] >= 0.25:
        line += (
            " **Other work shared the machine during this run: rows with a high figure are "
            "noisy; rerun when the machine is idle.**"
        )
    return line


def render_markdown(
    meta: dict[str, Any],
    in_process: dict[str, dict[str, float]],
    results: list[ScenarioResult],
    ratios: dict[str, Any],
    targets: list[Target],
    skipped: list[dict[str, str]],
    batch_rows: int,
) -> str:
    """The human report: targets first, then every number they come from."""
    lines = [
        "# modelserve benchmark: latest run",
        "",
        f"Run {meta['started_at']} on {meta['machine']}; each scenario {meta['repeats']} run(s) "
        f"of {meta['duration_s']:g} s after {meta['warmup_s']:g} s warm-up, the median run shown "
        f"and used for every ratio and target; `{meta['command']}`.",
        f"Load average at start {_loads(meta.get('load_average_at_start'))}, at end "
        f"{_loads(meta.get('load_average_at_end'))} (1 / 5 / 15 min).",
        f"Load generator: {meta['wrk_version']}, `wrk -t1 -cN --latency`, on the same cores "
        "as the servers. Absolute numbers move ±25 % between runs: compare ratios.",
        _noise_line(results),
        f"`modelserve optimize` of the forest (formats scenarios): {meta.get('optimize_forest')}.",
        "",
        "## Targets (reported, not asserted)",
        "",
    ]
    for t in targets:
        mark = "N/A" if t.passed is None else ("PASS" if t.passed else "FAIL")
        lines.append(f"- **{mark}** {t.name}: {t.detail}")
    lines += ["", "## Ratios (same run)", "", "| ratio | meaning | value |", "|---|---|---:|"]
    for key, value in ratios.items():
        shown = value if isinstance(value, str) or value is None else f"{value:.2f}"
        lines.append(
            f"| {key} | {_describe(key, batch_rows)} | {shown if shown is not None else 'n/a'} |"
        )
    single = [r for r in results if r.kind == "predict"]
    lines += ["", "## Single-row `/predict`", "", _TABLE_HEAD, *map(_row, single)]
    batch = [r for r in results if r.kind == "predict-batch"]
    lines += ["", f"## `/predict-batch`, {batch_rows} rows per request", "", _TABLE_HEAD]
    lines += map(_row, batch)
    lines += [
        "",
        "In-process ceiling timed right before and after each batch run (64-row batches, "
        "mean of the two), the denominator of the batch ratio: "
        + (
            ", ".join(
                f"{r.model} {r.in_process_rows_per_s['64']:,.0f} rows/s"
                for r in batch
                if r.in_process_rows_per_s
            )
            or "n/a"
        )
        + ".",
    ]
    health = [r for r in results if r.kind == "health-under-load"]
    lines += [
        "",
        "## `/health` while `/predict` is saturated",
        "",
        "Two wrk at once: one on `/predict` (single rows), one on `/health`. modelserve is "
        "measured on its probe port (`--probe-port`, what the shipped manifests probe) and on "
        "its serving port.",
        "",
        "| server | /health port | saturating model | /predict conns | /predict req/s "
        "| /predict errors | /health conns | /health answers | /health p50 ms | /health p99 ms "
        "| /health max ms | /health errors | other CPU (cores) | runs (/health p99) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in health:
        if r.status != "ok" or r.wrk is None or r.load is None:
            lines.append(
                f"| {r.server_label} | {r.health_port} | {r.model} | failed: {r.note} |||||||||||"
            )
            continue
        h, ld = r.wrk, r.load
        if h.requests == 0:
            latencies = f"no answer within {h.duration_s:.0f} s |||"
        else:
            lat = h.latency_ms
            latencies = f"{lat['p50']:.2f} | {lat['p99']:.2f} | {lat['max']:.2f} |"
        lines.append(
            f"| {r.server_label} | {r.health_port} | {r.model} | {r.load_connections} "
            f"| {ld.rps:,.0f} "
            f"| {ld.error_total} | {r.connections} | {h.requests:,} | {latencies} "
            f"{h.error_total} | {_other(r)} | {_runs(r)} |"
        )
    lines += [
        "",
        "## In-process ceiling (`predict_proba` in the harness process)",
        "",
        "Median rows/s of several timed repeats (`time.perf_counter`), no HTTP at all; "
        "timed at the start of the run.",
        "",
        "| model | 1-row calls | 64-row batches | 1000-row batches |",
        "|---|---:|---:|---:|",
    ]
    for model, rates in in_process.items():
        lines.append(f"| {model} | {rates['1']:,.0f} | {rates['64']:,.0f} | {rates['1000']:,.0f} |")
    lines += ["", "## Skipped or failed", ""]
    failed = [r for r in results if r.status != "ok"]
    if not skipped and not failed:
        lines.append("Nothing.")
    lines += [f"- {s['what']}: {s['reason']}" for s in skipped]
    lines += [f"- {r.id}: {r.note}" for r in failed]
    lines += ["", "## Method", "", *[f"- {note}" for note in meta["method"]], ""]
    return "\n".join(lines)
