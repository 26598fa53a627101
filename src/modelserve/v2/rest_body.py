"""The V2 REST body: a JSON document, optionally followed by binary tensor data.

With the binary tensor extension the body is a JSON header of ``Inference-Header-Content-Length``
bytes, then each binary input's raw bytes in input order, each input's JSON naming its size in
``parameters.binary_data_size``. Responses mirror it for outputs the client asked for in binary
(``binary_data`` on an output, or ``binary_data_output`` on the request).
"""

from __future__ import annotations

from typing import Any

import orjson

from modelserve.errors import InvalidInputError, InvalidJSONError, InvalidTensorError
from modelserve.v2 import tensor
from modelserve.v2.messages import InferRequest, InferResponse, RequestedOutput

BINARY_CONTENT_TYPE = "application/octet-stream"
HEADER_LENGTH = "inference-header-content-length"


def decode_infer_request(body: bytes, header_length: int | None = None) -> InferRequest:
    """Parse an infer body; ``header_length`` is the JSON part's size under the binary
    extension (None: the whole body is JSON)."""
    if header_length is None:
        header_length = len(body)
    elif not 0 <= header_length <= len(body):
        raise InvalidInputError(
            f"Inference-Header-Content-Length is {header_length}, the body has {len(body)} bytes"
        )
    view = memoryview(body)
    document = _parse_json(view[:header_length])
    binary = view[header_length:]
    inputs_json = document.get("inputs")
    if not isinstance(inputs_json, list) or not inputs_json:
        raise InvalidInputError('"inputs" must be a non-empty list of tensors')
    inputs, offset = [], 0
    names: set[str] = set()
    for position, item in enumerate(inputs_json):
        decoded, offset = _decode_input(item, position, binary, offset)
        if decoded.name in names:
            raise InvalidTensorError(decoded.name, "appears twice in inputs")
        names.add(decoded.name)
        inputs.append(decoded)
    if offset != len(binary):
        raise InvalidInputError(
            f"the body has {len(binary) - offset} bytes of binary data no input claims"
        )
    return InferRequest(
        inputs=inputs,
        outputs=_decode_outputs(document.get("outputs")),
        id=_optional_id(document.get("id")),
        parameters=_parameters(document.get("parameters"), "request"),
    )


def _parse_json(raw: memoryview) -> dict[str, Any]:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSONError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidInputError("the request body must be a JSON object")
    return document


def _decode_input(
    item: object, position: int, binary: memoryview, offset: int
) -> tuple[tensor.Tensor, int]:
    if not isinstance(item, dict):
        raise InvalidInputError(f"input {position} must be an object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f'input {position} needs a "name" string')
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidTensorError(name, 'needs a "datatype" string')
    shape = tensor.check_shape(name, item.get("shape"))
    parameters = _parameters(item.get("parameters"), f"input {name!r}")
    size = parameters.get("binary_data_size")
    if size is None:
        if "data" not in item:
            raise InvalidTensorError(name, 'needs "data" or parameters.binary_data_size')
        return tensor.from_json(name, datatype, shape, item["data"], parameters), offset
    if "data" in item:
        raise InvalidTensorError(name, 'has both "data" and binary_data_size')
    if type(size) is not int or size < 0:
        raise InvalidTensorError(name, "binary_data_size must be a non-negative integer")
    if offset + size > len(binary):
        raise InvalidTensorError(
            name,
            f"binary_data_size is {size}, only {len(binary) - offset} bytes of binary data remain",
        )
    decoded = tensor.from_raw(name, datatype, shape, binary[offset : offset + size])
    return tensor.Tensor(name, datatype, shape, decoded.data, parameters), offset + size


def _decode_outputs(outputs: object) -> list[RequestedOutput] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list):
        raise InvalidInputError('"outputs" must be a list')
    requested = []
    for position, item in enumerate(outputs):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInputError(f'output {position} must be an object with a "name" string')
        name = item["name"]
        requested.append(RequestedOutput(name, _parameters(item.get("parameters"), repr(name))))
    return requested


def _optional_id(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidInputError('"id" must be a string')


def _parameters(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"parameters of {where} must be an object")
    return value


def encode_infer_response(
    response: InferResponse, request: InferRequest
) -> tuple[bytes, int | None]:
    """The body and, when any output goes out in binary, the JSON header's length."""
    binary_default = request.parameters.get("binary_data_output") is True
    binary_by_name = {
        output.name: output.parameters.get("binary_data")
        for output in request.outputs or ()
        if "binary_data" in output.parameters
    }
    outputs_json, tails = [], []
    for output in response.outputs:
        entry: dict[str, Any] = {
            "name": output.name,
            "datatype": output.datatype,
            "shape": list(output.shape),
        }
        parameters = dict(output.parameters)
        if binary_by_name.get(output.name, binary_default) is True:
            raw = tensor.to_raw(output)
            parameters["binary_data_size"] = len(raw)
            tails.append(raw)
        else:
            entry["data"] = tensor.to_json_data(output)
        if parameters:
            entry["parameters"] = parameters
        outputs_json.append(entry)
    document: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
    }
    if response.id is not None:
        document["id"] = response.id
    if response.parameters:
        document["parameters"] = dict(response.parameters)
    document["outputs"] = outputs_json
    header = orjson.dumps(document)
    if not tails:
        return header, None
    return b"".join([header, *tails]), len(header)
