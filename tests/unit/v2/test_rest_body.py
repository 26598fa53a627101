"""The V2 REST body: JSON inputs, the binary tensor extension, and response encoding."""

from __future__ import annotations

import contextlib
import struct

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelserve.errors import InvalidInputError, InvalidTensorError
from modelserve.v2 import tensor
from modelserve.v2.messages import InferRequest, InferResponse, RequestedOutput
from modelserve.v2.rest_body import decode_infer_request, encode_infer_response


def _binary_body(header: dict[str, object], *tails: bytes) -> tuple[bytes, int]:
    json_part = orjson.dumps(header)
    return json_part + b"".join(tails), len(json_part)


def test_rest_body_json_request_keeps_id_parameters_and_outputs() -> None:
    """A JSON infer request keeps its id, parameters and requested outputs."""
    body = orjson.dumps(
        {
            "id": "r1",
            "parameters": {"p": 1},
            "inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}],
            "outputs": [{"name": "label", "parameters": {"binary_data": True}}],
        }
    )
    request = decode_infer_request(body)
    assert request.id == "r1"
    assert request.parameters == {"p": 1}
    assert request.outputs == [RequestedOutput("label", {"binary_data": True})]
    np.testing.assert_array_equal(request.inputs[0].data, [[1.0, 2.0]])


def test_rest_body_binary_inputs_follow_the_header_in_order() -> None:
    """Binary inputs are cut from the tail in input order by their binary_data_size."""
    first = np.array([[1.5, 2.5]], dtype="<f4").tobytes()
    second = struct.pack("<I", 2) + b"hi"
    body, length = _binary_body(
        {
            "inputs": [
                {
                    "name": "a",
                    "shape": [1, 2],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(first)},
                },
                {
                    "name": "b",
                    "shape": [1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(second)},
                },
                {"name": "c", "shape": [1], "datatype": "INT8", "data": [3]},
            ]
        },
        first,
        second,
    )
    a, b, c = decode_infer_request(body, length).inputs
    np.testing.assert_array_equal(a.data, [[1.5, 2.5]])
    assert b.data.tolist() == [b"hi"]
    assert c.data.tolist() == [3]


@pytest.mark.parametrize(
    ("header", "tail", "length_delta", "message"),
    [
        ({"inputs": []}, b"", 0, '"inputs" must be a non-empty list'),
        ({"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}, b"", 0, '"name"'),
        ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32"}]}, b"", 0, '"data" or'),
        (
            {
                "inputs": [
                    {
                        "name": "a",
                        "shape": [2],
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": 8},
                    }
                ]
            },
            b"\0" * 4,
            0,
            "only 4 bytes of binary data remain",
        ),
        (
            {"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}]},
            b"\0" * 4,
            0,
            "4 bytes of binary data no input claims",
        ),
        (
            {
                "inputs": [
                    {"name": "a", "shape": [1], "datatype": "FP32", "data": [1]},
                    {"name": "a", "shape": [1], "datatype": "FP32", "data": [1]},
                ]
            },
            b"",
            0,
            "appears twice",
        ),
        (
            {"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}]},
            b"",
            10**6,
            "Inference-Header-Content-Length is",
        ),
        (
            {"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}], "id": 3},
            b"",
            0,
            '"id" must be a string',
        ),
    ],
    ids=[
        "no-inputs",
        "no-name",
        "no-data",
        "short-tail",
        "unclaimed-tail",
        "duplicate",
        "header-length",
        "id-type",
    ],
)
def test_rest_body_malformed_requests_say_what_is_wrong(
    header: dict[str, object], tail: bytes, length_delta: int, message: str
) -> None:
    """Each malformed request is a 400-class error naming its problem."""
    body, length = _binary_body(header, tail)
    with pytest.raises(InvalidInputError, match=message):
        decode_infer_request(body, length + length_delta)


@given(st.binary(max_size=200), st.none() | st.integers(-5, 300))
def test_rest_body_garbage_is_refused_cleanly(body: bytes, header_length: int | None) -> None:
    """Arbitrary bytes parse or fail with an InvalidInputError, never anything else."""
    with contextlib.suppress(InvalidInputError):
        decode_infer_request(body, header_length)


def _response() -> InferResponse:
    labels = np.empty(2, dtype=object)
    labels[:] = [b"setosa", b"virginica"]
    return InferResponse(
        "iris",
        "1",
        [
            tensor.Tensor("label", "BYTES", (2,), labels),
            tensor.Tensor("probabilities", "FP64", (2, 2), np.array([[0.9, 0.1], [0.2, 0.8]])),
        ],
        id="r1",
    )


def test_rest_body_json_response_has_data_and_echoes_id() -> None:
    """Without binary outputs the response is plain JSON with flat data and the request id."""
    body, header_length = encode_infer_response(_response(), InferRequest(inputs=[]))
    assert header_length is None
    document = orjson.loads(body)
    assert document["id"] == "r1"
    assert document["outputs"][0]["data"] == ["setosa", "virginica"]
    assert document["outputs"][1]["data"] == [0.9, 0.1, 0.2, 0.8]


def test_rest_body_binary_output_is_raw_after_the_header() -> None:
    """An output asked for in binary leaves JSON data out and follows the header raw."""
    request = InferRequest(
        inputs=[],
        outputs=[RequestedOutput("probabilities", {"binary_data": True}), RequestedOutput("label")],
    )
    body, header_length = encode_infer_response(_response(), request)
    assert header_length is not None
    document = orjson.loads(body[:header_length])
    probabilities = document["outputs"][1]
    assert "data" not in probabilities
    assert probabilities["parameters"] == {"binary_data_size": 32}
    np.testing.assert_array_equal(np.frombuffer(body[header_length:], "<f8"), [0.9, 0.1, 0.2, 0.8])


def test_rest_body_binary_data_output_makes_every_output_binary() -> None:
    """The request parameter binary_data_output sends every output in binary."""
    request = InferRequest(inputs=[], parameters={"binary_data_output": True})
    body, header_length = encode_infer_response(_response(), request)
    assert header_length is not None
    document = orjson.loads(body[:header_length])
    assert [o["parameters"]["binary_data_size"] for o in document["outputs"]] == [23, 32]
    labels = tensor.from_raw("label", "BYTES", (2,), body[header_length : header_length + 23])
    assert labels.data.tolist() == [b"setosa", b"virginica"]


def test_rest_body_wrong_size_binary_input_names_the_tensor() -> None:
    """A binary input whose size does not fit its shape names the tensor and both sizes."""
    body, length = _binary_body(
        {
            "inputs": [
                {
                    "name": "a",
                    "shape": [2],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 8},
                }
            ]
        },
        b"\0" * 8,
    )
    with pytest.raises(InvalidTensorError, match="'a': shape \\[2\\] of FP64 needs 16 bytes"):
        decode_infer_request(body, length)
