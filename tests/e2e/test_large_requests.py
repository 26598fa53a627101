"""Large requests (one inference-thread job each) against a real server: every fault answers
exactly as the same fault in a small request (the staged path), and cache hits, misses and
metrics count as they do for any request, through /predict-batch, V2 REST and gRPC."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from modelserve.demo import FEATURES
from modelserve.rpc import inference_pb2 as pb
from modelserve.rpc.servicer import SERVICE
from tests import prometheus
from tests.conftest import free_port
from tests.e2e.conftest import ModuleServers, RunningServer

pytestmark = pytest.mark.e2e

LARGE, SMALL = 1000, 5
"""Rows of a body computed as one job (about 30-60 KB), and of one computed in stages."""
_RNG = np.random.default_rng(5)


def _rows(n: int) -> list[list[float]]:
    rows: list[list[float]] = np.round(
        _RNG.uniform([4, 2, 1, 0], [8, 5, 7, 3], size=(n, 4)), 3
    ).tolist()
    return rows


@pytest.fixture(scope="module")
def grpc_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server(module_servers: ModuleServers, grpc_port: int) -> RunningServer:
    """iris with named features, the memory cache, gRPC on."""
    config = {
        "server": {"grpc_port": grpc_port},
        "cache": {"backend": "memory"},
        "default_model": "iris",
        "models": [module_servers.iris(feature_names=FEATURES)],
    }
    return module_servers.serve(config)


def _metric(server: RunningServer, name: str, **labels: str) -> float:
    return prometheus.total(
        httpx.get(server.base_url + "/metrics", timeout=10).text, name, **labels
    )


def _post_batch(server: RunningServer, rows: list[Any], query: str = "") -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/predict-batch{query}",
        content=json.dumps({"batch": rows}),  # json, not orjson: NaN must reach the server
        headers={"Content-Type": "application/json"},
        timeout=30,
    )


def _with_first_row(rows: list[Any], first: Any) -> list[Any]:
    return [first, *rows[1:]]


BATCH_FAULTS: dict[str, Callable[[list[list[float]]], tuple[list[Any], str]]] = {
    "wrong-width": lambda rows: (_with_first_row(rows, [1.0, 2.0, 3.0]), ""),
    "nan": lambda rows: (_with_first_row(rows, [1.0, 2.0, math.nan, 4.0]), ""),
    "string": lambda rows: (_with_first_row(rows, [1.0, "x", 3.0, 4.0]), ""),
    "boolean": lambda rows: (_with_first_row(rows, [1.0, True, 3.0, 4.0]), ""),
    "named-missing": lambda rows: ([dict(zip(FEATURES[:3], r, strict=False)) for r in rows], ""),
    "unknown-model": lambda rows: (rows, "?model=nope"),
    "top-k-too-big": lambda rows: (rows, "?top_k=9"),
}


@pytest.mark.parametrize("fault", list(BATCH_FAULTS), ids=list(BATCH_FAULTS))
def test_large_batch_fails_as_a_small_one_does(server: RunningServer, fault: str) -> None:
    """/predict-batch: each fault in a large body gets the status and body it gets in a
    small one (request id aside)."""
    answers = []
    for n in (SMALL, LARGE):
        rows, query = BATCH_FAULTS[fault](_rows(n))
        response = _post_batch(server, rows, query)
        body = response.json()
        if isinstance(body, dict):
            body.pop("request_id", None)
        answers.append((response.status_code, body))
    assert answers[0] == answers[1]
    assert 400 <= answers[0][0] < 500


def test_large_batch_over_the_body_limit_is_413(server: RunningServer) -> None:
    """A body over the byte limit is refused 413 before it is read, as ever."""
    rows = _rows(LARGE)
    body = json.dumps({"batch": rows}).encode() + b" " * 2_000_000
    response = httpx.post(
        server.base_url + "/predict-batch",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert (response.status_code, response.json()["code"]) == (413, "body_too_large")


def _v2_binary(
    server: RunningServer, model: str, values: np.ndarray, shape: list[int]
) -> httpx.Response:
    raw = values.astype("<f8").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP64",
                    "shape": shape,
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return httpx.post(
        f"{server.base_url}/v2/models/{model}/infer",
        content=header + raw,
        headers={
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        },
        timeout=30,
    )


def _grpc(grpc_port: int, model: str, values: np.ndarray, shape: list[int]) -> Any:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="input", datatype="FP64", shape=shape)
    request.raw_input_contents.append(values.astype("<f8").tobytes())
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        call = channel.unary_unary(
            f"/{SERVICE}/ModelInfer",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        try:
            return call(request, timeout=30)
        except grpc.RpcError as exc:
            return exc.code().name, exc.details()


def _sizes_aside(message: str) -> str:
    return re.sub(r"\d+", "N", message)


TENSOR_FAULTS: dict[str, Callable[[int], tuple[str, np.ndarray, list[int]]]] = {
    "wrong-shape": lambda n: ("iris", np.ones((n, 3)), [n, 3]),
    "size-mismatch": lambda n: ("iris", np.ones((n, 4)), [n + 1, 4]),
    "nan": lambda n: ("iris", np.where(np.arange(n * 4) == 2, np.nan, 1.0), [n, 4]),
    "unknown-model": lambda n: ("nope", np.ones((n, 4)), [n, 4]),
}


@pytest.mark.parametrize("fault", list(TENSOR_FAULTS), ids=list(TENSOR_FAULTS))
def test_large_tensor_fails_as_a_small_one_does(
    server: RunningServer, grpc_port: int, fault: str
) -> None:
    """V2 binary and gRPC raw: each fault in a large tensor answers as in a small one (the
    sizes the message names aside)."""
    answers = []
    for n in (SMALL, LARGE):
        model, values, shape = TENSOR_FAULTS[fault](n)
        rest = _v2_binary(server, model, values, shape)
        code, details = _grpc(grpc_port, model, values, shape)
        answers.append(
            (
                rest.status_code,
                _sizes_aside(rest.json()["error"]),
                code,
                _sizes_aside(details),
            )
        )
    assert answers[0] == answers[1]
    assert answers[0][0] in (400, 404)


def test_large_requests_share_the_cache_and_count_once(
    server: RunningServer, grpc_port: int
) -> None:
    """A large /predict-batch is a MISS, the same rows again a HIT, half of them new a
    PARTIAL; V2 binary and gRPC read the same entries. Each request counts once, with all
    its rows, and each row once as a hit or a miss."""
    labels = {"model": "iris", "model_version": "1"}

    def counts() -> tuple[float, ...]:
        return (
            _metric(server, "modelserve_predictions_total", **labels),
            _metric(server, "modelserve_rows_predicted_total", **labels),
            _metric(server, "modelserve_cache_requests_total", result="hit", **labels),
            _metric(server, "modelserve_cache_requests_total", result="miss", **labels),
        )

    rows = _rows(LARGE)
    before = counts()
    first, again = _post_batch(server, rows), _post_batch(server, rows)
    half_new = _post_batch(server, rows[: LARGE // 2] + _rows(LARGE // 2))
    statuses = [r.headers.get("x-cache") for r in (first, again, half_new)]
    assert statuses == ["MISS", "HIT", "PARTIAL"]
    assert first.json()["predictions"] == again.json()["predictions"]
    binary = _v2_binary(server, "iris", np.array(rows), [LARGE, 4])
    assert binary.status_code == 200
    raw = _grpc(grpc_port, "iris", np.array(rows), [LARGE, 4])
    assert len(raw.raw_output_contents) == 2
    after = counts()
    requests, predicted, hits, misses = (a - b for a, b in zip(after, before, strict=True))
    assert (requests, predicted) == (5, 5 * LARGE)
    assert (hits, misses) == (LARGE + LARGE // 2 + 2 * LARGE, LARGE + LARGE // 2)


def test_large_request_failures_count_as_small_ones_do(server: RunningServer) -> None:
    """A batch that does not fit the model counts one failure of its code, large or small;
    a body that does not validate (422) counts none, as before it reached the model."""

    def failures(code: str) -> float:
        return _metric(
            server, "modelserve_inference_errors_total", model="iris", model_version="1", code=code
        )

    before = failures("wrong_feature_count"), failures("internal_error")
    for n in (SMALL, LARGE):
        assert _post_batch(server, _with_first_row(_rows(n), [1.0, 2.0])).status_code == 400
        assert _post_batch(server, _with_first_row(_rows(n), ["x"] * 4)).status_code == 422
    assert failures("wrong_feature_count") == before[0] + 2
    assert failures("internal_error") == before[1]
