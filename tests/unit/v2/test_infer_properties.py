"""Property tests: whatever a client sends to V2 infer, the answer is a 200 or a clean 4xx.

Bodies are generated near the valid ones, so most of them get past JSON parsing: inputs named
``input``, after the model's features or anything else, every datatype and some that do not
exist, shapes of any length, sign and size, JSON ``data`` of any kind or binary tensors whose
``binary_data_size`` and ``Inference-Header-Content-Length`` agree with the tail or not, and
raw bytes that decode to NaN, infinities or integers past 2**53. The parser and the
named-feature mapping get them directly (many examples); a real app gets them over HTTP.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from modelserve.api.errors import http_status
from modelserve.app import create_app
from modelserve.errors import ModelserveError
from modelserve.settings import load_settings
from modelserve.v2.datatypes import DATATYPES, NUMPY_DTYPES
from modelserve.v2.features import feature_matrix
from modelserve.v2.rest_body import decode_infer_request
from tests import iris_versions as iv
from tests.conftest import wait_until_loaded

NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ITEMSIZES = {name: dtype.itemsize for name, dtype in NUMPY_DTYPES.items() if name != "BYTES"}

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=16,
)
tensor_names = st.sampled_from(["input", *NAMES, "other", ""])
datatypes = st.sampled_from([*DATATYPES, "FP128", "int32", ""])
dimensions = st.integers(-2, 6) | st.sampled_from([2**31, 2**63, 10**20, 1.5, "2", None])
shapes = st.lists(dimensions, max_size=3) | json_values


@st.composite
def binary_inputs(draw: st.DrawFn) -> tuple[dict[str, Any], bytes]:
    """A numeric tensor sent in binary: a shape, its raw bytes (any bit pattern, so NaN and
    infinities too), and a binary_data_size that usually matches them."""
    name = draw(tensor_names)
    datatype = draw(st.sampled_from(list(ITEMSIZES)))
    shape = draw(st.sampled_from([[2, 4], [1, 4], [3], [2, 1], [0, 4], [1, 3]]))
    size = int(np.prod(shape)) * ITEMSIZES[datatype]
    raw = draw(st.binary(min_size=size, max_size=size))
    declared = draw(st.just(size) | st.integers(-1, size + 8) | st.sampled_from(["8", 1.0]))
    parameters = {"binary_data_size": declared}
    return {"name": name, "datatype": datatype, "shape": shape, "parameters": parameters}, raw


@st.composite
def json_inputs(draw: st.DrawFn) -> tuple[dict[str, Any], bytes]:
    """A tensor in JSON: any name, datatype, shape and data, nested or flat."""
    entry: dict[str, Any] = {"name": draw(tensor_names), "datatype": draw(datatypes)}
    entry["shape"] = draw(shapes)
    numbers = st.lists(st.floats() | st.integers(-(2**64), 2**64) | st.booleans(), max_size=9)
    entry["data"] = draw(numbers | st.lists(numbers, max_size=3) | json_values)
    return draw(st.just(entry) | st.dictionaries(st.sampled_from(list(entry)), json_values)), b""


@st.composite
def infer_bodies(draw: st.DrawFn) -> tuple[bytes, int | None]:
    """A body and the Inference-Header-Content-Length that goes with it (None: all JSON)."""
    parts = draw(st.lists(binary_inputs() | json_inputs(), min_size=1, max_size=5))
    document: dict[str, Any] = {"inputs": [entry for entry, _ in parts]}
    if draw(st.booleans()):
        document["outputs"] = draw(
            st.lists(st.fixed_dictionaries({"name": st.text(max_size=8)}), max_size=2) | json_values
        )
    if draw(st.booleans()):
        document["parameters"] = draw(
            st.fixed_dictionaries({"binary_data_output": json_scalars}) | json_values
        )
    header = json.dumps(document).encode()  # the stdlib writes any integer (and NaN)
    tail = b"".join(raw for _, raw in parts) + draw(st.just(b"") | st.binary(max_size=8))
    length = draw(st.just(len(header)) | st.integers(-3, len(header) + 8))
    if not tail and draw(st.booleans()):
        return header, None
    return header + tail, length


def _outcome(body: bytes, header_length: int | None) -> int:
    """200 with a (rows, 4) matrix, or the status of the domain error raised."""
    try:
        request = decode_infer_request(body, header_length)
        matrix = feature_matrix(request.inputs, len(NAMES), NAMES)
    except ModelserveError as exc:
        return http_status(exc)
    assert matrix.dtype == np.float64
    assert matrix.ndim == 2
    assert matrix.shape[1] == len(NAMES)
    return 200


# Found by the generator: a shape numpy cannot build (a side past int64 beside a 0) was a 500.
HUGE_SIDE = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [0, 2**63], "data": []}]}
DEEP = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1] * 65, "data": [1.0]}]}


@settings(max_examples=300, deadline=None)
@given(infer_bodies())
@example((json.dumps(HUGE_SIDE).encode(), None))
@example((json.dumps(DEEP).encode(), None))
def test_v2_infer_parser_and_feature_mapping_refuse_cleanly(
    generated: tuple[bytes, int | None],
) -> None:
    """Any generated body: a float64 (rows, 4) matrix, or a domain error with a 4xx."""
    status = _outcome(*generated)
    assert status == 200 or 400 <= status < 500


class _App:
    """A real app (lifespan, middleware, routes) on an event loop of its own, called from
    synchronous hypothesis tests one request at a time."""

    def __init__(self, app: FastAPI) -> None:
        self.loop = asyncio.new_event_loop()
        self._lifespan, self.client = self.loop.run_until_complete(self._start(app))

    @staticmethod
    async def _start(app: FastAPI) -> tuple[LifespanManager, httpx.AsyncClient]:
        lifespan = LifespanManager(app, startup_timeout=60)  # finds its loop: inside it
        await lifespan.__aenter__()
        await wait_until_loaded(app)
        transport = httpx.ASGITransport(app=lifespan.app)
        return lifespan, httpx.AsyncClient(transport=transport, base_url="http://test")

    def post(self, path: str, body: bytes, headers: dict[bytes, bytes]) -> httpx.Response:
        return self.loop.run_until_complete(self.client.post(path, content=body, headers=headers))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self._lifespan.__aexit__(None, None, None))
        self.loop.close()


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_App]:
    """An iris classifier with feature names, the cache off (every body is computed)."""
    path = iv.dump(iv.logistic(), tmp_path_factory.mktemp("v2-properties") / "iris.joblib")
    settings_ = load_settings(
        None,
        models=[{"name": "iris", "path": str(path), "feature_names": NAMES}],
        cache={"backend": "none"},
    )
    app = _App(create_app(settings_))
    yield app
    app.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    infer_bodies(),
    st.none() | st.sampled_from(["abc", "-1", "1e3", " 4", "\u00b2", "99999999999999999999"]),
)
def test_v2_infer_over_http_answers_200_or_a_v2_4xx(
    http: _App, generated: tuple[bytes, int | None], odd_header: str | None
) -> None:
    """The same bodies through the app: 200 with outputs, or a 4xx {"error"} body, never 5xx
    (odd header values too: "²" passed str.isdigit() and then failed int(), a 500)."""
    body, length = generated
    headers = {b"content-type": b"application/json"}
    if odd_header is not None:
        headers[b"inference-header-content-length"] = odd_header.encode("latin-1")
    elif length is not None:
        headers[b"inference-header-content-length"] = str(length).encode()
    response = http.post("/v2/models/iris/infer", body, headers)
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        return
    assert response.status_code >= 400
    assert list(response.json()) == ["error"]
    assert "Traceback" not in response.text
    assert str(Path.cwd()) not in response.text
