"""Each transport hands a large body to one inference-thread job: its parse and its encode run
there, not on the event loop; small bodies keep the staged path on the loop."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from modelserve.api.routes import predict as predict_routes
from modelserve.api.routes import v2 as v2_routes
from modelserve.inference.batcher import INFERENCE_THREAD_PREFIX
from modelserve.rpc import convert
from modelserve.rpc import inference_pb2 as pb
from modelserve.rpc.servicer import SERVICE
from modelserve.settings import Settings
from tests.conftest import free_port

RNG = np.random.default_rng(11)
LARGE = np.round(RNG.uniform([4, 2, 1, 0], [8, 5, 7, 3], size=(1000, 4)), 2)
SMALL = LARGE[:5]


class _Threads:
    """Wraps module functions so that each call records the thread it ran in."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, str]] = []
        self._monkeypatch = monkeypatch

    def record(self, module: Any, name: str) -> None:
        original = getattr(module, name)

        def recorded(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, threading.current_thread().name))
            return original(*args, **kwargs)

        self._monkeypatch.setattr(module, name, recorded)

    def stages(self) -> dict[str, bool]:
        """Each recorded stage, and whether it ran in an inference thread."""
        return {name: thread.startswith(INFERENCE_THREAD_PREFIX) for name, thread in self.calls}

    def one_thread(self) -> bool:
        return len({thread for _, thread in self.calls}) == 1


async def _predict_batch(client: httpx.AsyncClient, rows: np.ndarray) -> httpx.Response:
    return await client.post("/predict-batch", json={"batch": rows.tolist()})


async def _v2_binary(client: httpx.AsyncClient, rows: np.ndarray) -> httpx.Response:
    raw = rows.astype("<f8").tobytes()
    header = (
        b'{"inputs":[{"name":"input","datatype":"FP64","shape":[%d,4],'
        b'"parameters":{"binary_data_size":%d}}],"parameters":{"binary_data_output":true}}'
        % (len(rows), len(raw))
    )
    return await client.post(
        "/v2/models/iris/infer",
        content=header + raw,
        headers={
            "content-type": "application/octet-stream",
            "inference-header-content-length": str(len(header)),
        },
    )


@pytest.mark.parametrize(
    ("rows", "in_job"), [(LARGE, True), (SMALL, False)], ids=["large", "small"]
)
async def test_predict_batch_parses_and_serialises_a_large_body_in_the_inference_thread(
    app_client: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    rows: np.ndarray,
    in_job: bool,
) -> None:
    """/predict-batch: a large body is parsed and its answer serialised in one inference
    thread; a small one stays on the loop."""
    threads = _Threads(monkeypatch)
    threads.record(predict_routes, "parse_batch")
    threads.record(predict_routes, "_batch_answer")
    async with app_client() as client:
        response = await _predict_batch(client, rows)
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == len(rows)
    assert threads.stages() == {"parse_batch": in_job, "_batch_answer": in_job}
    assert threads.one_thread()


@pytest.mark.parametrize(
    ("rows", "in_job"), [(LARGE, True), (SMALL, False)], ids=["large", "small"]
)
async def test_v2_rest_decodes_and_encodes_a_large_body_in_the_inference_thread(
    app_client: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    rows: np.ndarray,
    in_job: bool,
) -> None:
    """V2 REST binary: a large body's decode and encode run in one inference thread."""
    threads = _Threads(monkeypatch)
    threads.record(v2_routes, "decode_infer_request")
    threads.record(v2_routes, "encode_infer_response")
    async with app_client() as client:
        response = await _v2_binary(client, rows)
    assert response.status_code == 200, response.text
    assert threads.stages() == {"decode_infer_request": in_job, "encode_infer_response": in_job}
    assert threads.one_thread()


@pytest.mark.parametrize(
    ("rows", "in_job"), [(LARGE, True), (SMALL, False)], ids=["large", "small"]
)
async def test_grpc_converts_a_large_message_in_the_inference_thread(
    app_client: Callable[..., Any],
    settings_factory: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    rows: np.ndarray,
    in_job: bool,
) -> None:
    """gRPC raw contents: a large message's contents become arrays, and the answer raw
    contents, in one inference thread."""
    threads = _Threads(monkeypatch)
    threads.record(convert, "infer_request")
    threads.record(convert, "infer_response")
    port = free_port()
    request = pb.ModelInferRequest(model_name="iris")
    request.inputs.add(name="input", datatype="FP64", shape=rows.shape)
    request.raw_input_contents.append(rows.astype("<f8").tobytes())
    async with (
        app_client(settings_factory(server={"grpc_port": port})),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        call = channel.unary_unary(
            f"/{SERVICE}/ModelInfer",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        answer = await call(request, timeout=30)
    assert len(answer.raw_output_contents) == 2
    assert threads.stages() == {"infer_request": in_job, "infer_response": in_job}
    assert threads.one_thread()
