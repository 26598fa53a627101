"""What each stage of one 1000-row request costs in process, and whether binary tensors are
read without a copy.

``python -m benchmarks.large_stages --config /tmp/demo/modelserve.yaml --model iris`` loads
the config's models (cache off, as the V2 benchmark serves them), then times, best of
``--repeats`` x ``--calls`` with ``time.process_time`` (CPU of this process, every thread),
on jittered iris rows as the benchmark sends them: the model's own 1000-row call; a V2 binary
body decoded (and whether its array is a view of the body: zero copy); a gRPC message with
raw contents parsed, converted to arrays, and its answer converted and serialised; the
prediction metrics and the drift/latency windows of 1000 rows; a no-op job through the
batcher (the cost of one hand-off to the inference thread and back); and the whole request
through ``InferenceCore.infer_large`` (the one job of a large request), for V2 binary and
gRPC raw, beside the model call alone. The difference is what the core adds per request
beyond the model; a server adds its HTTP or HTTP/2 parsing, middleware, access log and
socket writes.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson

from benchmarks.models import request_rows
from modelserve.inference.core import InferenceCore
from modelserve.inference.large import record_outputs
from modelserve.inference.registry import ModelRegistry
from modelserve.inference.version import LoadedVersion
from modelserve.observability.health import HealthState
from modelserve.rpc import convert
from modelserve.rpc import inference_pb2 as pb
from modelserve.settings import load_settings
from modelserve.v2.dataplane import DataPlane
from modelserve.v2.rest_body import decode_infer_request, encode_infer_response

ROWS = 1000


def _binary_body(rows: np.ndarray[Any, Any]) -> tuple[bytes, int]:
    raw = rows.astype("<f8").tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP64",
                    "shape": list(rows.shape),
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    return header + raw, len(header)


def _grpc_message(model: str, rows: np.ndarray[Any, Any]) -> bytes:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="input", datatype="FP64", shape=rows.shape)
    request.raw_input_contents.append(rows.astype("<f8").tobytes())
    return request.SerializeToString()


def _best_us(stage: Callable[[], object], calls: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(calls):
            stage()
        best = min(best, (time.process_time() - started) / calls)
    return best * 1e6


async def _best_async_us(stage: Callable[[], Awaitable[object]], calls: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(calls):
            await stage()
        best = min(best, (time.process_time() - started) / calls)
    return best * 1e6


async def _measure(config: str, model: str, calls: int, repeats: int) -> None:
    settings = load_settings(config, cache={"backend": "none"})
    registry = ModelRegistry(settings)
    await registry.load_all(strict=True)
    core = InferenceCore(registry, HealthState(loading_done=True))
    plane = DataPlane(core, settings.server.max_batch_rows)
    entry = registry.get(model)
    if not isinstance(entry, LoadedVersion):
        raise SystemExit(f"{model} did not load")
    rows = request_rows(ROWS)  # iris rows: in range, as the V2 benchmark sends them
    body, header_length = _binary_body(rows)
    message = _grpc_message(entry.name, rows)
    decoded = decode_infer_request(body, header_length)
    zero_copy = np.shares_memory(decoded.inputs[0].data, np.frombuffer(body, dtype=np.uint8))
    call = entry.prepared.model_call
    outputs = entry.prepared.postprocessor.apply(call(rows))
    response = await plane.infer(entry.name, None, decoded)
    confidences = outputs.confidence_values()

    def grpc_in() -> object:
        return convert.infer_request(pb.ModelInferRequest.FromString(message))

    def grpc_out() -> bytes:
        return convert.infer_response(response, raw=True).SerializeToString()

    def drift() -> None:
        entry.monitor.observe(
            rows, 0.001, outputs.labels, confidences, outputs.label_ids, outputs.label_names
        )

    def rest_job() -> Awaitable[object]:
        return plane.infer_large(
            entry.name,
            None,
            functools.partial(decode_infer_request, body, header_length),
            encode_infer_response,
            len(body),
        )

    def grpc_job() -> Awaitable[object]:
        parsed = pb.ModelInferRequest.FromString(message)

        def encode(answer: Any, _: Any) -> bytes:
            return convert.infer_response(answer, raw=True).SerializeToString()

        return plane.infer_large(
            entry.name, None, functools.partial(convert.infer_request, parsed), encode, len(message)
        )

    figures = {
        "model call (1000 rows)": _best_us(lambda: call(rows), calls, repeats),
        "V2 binary decode": _best_us(
            lambda: decode_infer_request(body, header_length), calls, repeats
        ),
        "V2 binary encode": _best_us(
            lambda: encode_infer_response(response, decoded), calls, repeats
        ),
        "gRPC parse + contents to arrays": _best_us(grpc_in, calls, repeats),
        "gRPC answer to raw contents + serialise": _best_us(grpc_out, calls, repeats),
        "prediction metrics": _best_us(lambda: record_outputs(entry, outputs), calls, repeats),
        "drift + latency windows": _best_us(drift, calls, repeats),
        "no-op job (one hand-off and back)": await _best_async_us(
            lambda: entry.batcher.run_job(lambda _: None, ROWS), calls, repeats
        ),
        "whole V2 binary request (infer_large)": await _best_async_us(rest_job, calls, repeats),
        "whole gRPC raw request (infer_large)": await _best_async_us(grpc_job, calls, repeats),
    }
    print(f"binary input read without a copy (a view of the body): {bool(zero_copy)}")
    for name, micros in figures.items():
        print(f"{name:42s} {micros:9.1f} us")
    await core.close(5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.large_stages", description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    asyncio.run(_measure(args.config, args.model, args.calls, args.repeats))


if __name__ == "__main__":
    main()
