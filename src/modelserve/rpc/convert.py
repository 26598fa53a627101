"""Protobuf V2 messages ↔ the transport-neutral :mod:`modelserve.v2` messages.

Inputs arrive either as typed ``contents`` or as ``raw_input_contents`` (row-major
little-endian bytes, BYTES with 4-byte length prefixes), never both. The response mirrors the
request: raw inputs get ``raw_output_contents``, typed inputs get typed ``contents``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import numpy as np

from modelserve.errors import InvalidInputError, InvalidTensorError
from modelserve.rpc import inference_pb2 as pb
from modelserve.v2 import tensor
from modelserve.v2.datatypes import BYTES, numpy_dtype
from modelserve.v2.messages import InferRequest, InferResponse, RequestedOutput

_CONTENTS_FIELD: Final = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    BYTES: "bytes_contents",
}
"""Which typed field carries each datatype (FP16 has none: it travels raw only)."""


def infer_request(message: pb.ModelInferRequest) -> InferRequest:
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise InvalidInputError(
            f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs"
        )
    inputs = []
    names: set[str] = set()
    for position, item in enumerate(message.inputs):
        if not item.name:
            raise InvalidInputError(f"input {position} needs a name")
        if item.name in names:
            raise InvalidTensorError(item.name, "appears twice in inputs")
        names.add(item.name)
        shape = tensor.check_shape(item.name, list(item.shape))
        parameters = parameters_of(item.parameters)
        if raw:
            if item.HasField("contents"):
                raise InvalidTensorError(item.name, "has contents and raw_input_contents")
            decoded = tensor.from_raw(item.name, item.datatype, shape, raw[position])
        else:
            decoded = _from_contents(item, shape)
        inputs.append(tensor.Tensor(item.name, item.datatype, shape, decoded.data, parameters))
    outputs = [
        RequestedOutput(output.name, parameters_of(output.parameters)) for output in message.outputs
    ]
    return InferRequest(
        inputs=inputs,
        outputs=outputs or None,
        id=message.id or None,
        parameters=parameters_of(message.parameters),
    )


def _from_contents(
    item: pb.ModelInferRequest.InferInputTensor, shape: tuple[int, ...]
) -> tensor.Tensor:
    numpy_dtype(item.datatype)  # an unknown datatype is named before anything else
    field = _CONTENTS_FIELD.get(item.datatype)
    if field is None:
        raise InvalidTensorError(item.name, f"{item.datatype} travels only in raw_input_contents")
    values = list(getattr(item.contents, field))
    if item.datatype != BYTES:
        return tensor.from_json(item.name, item.datatype, shape, values, {})
    count = tensor.element_count(shape)
    if len(values) != count:
        raise InvalidTensorError(
            item.name, f"shape {list(shape)} needs {count} elements, contents has {len(values)}"
        )
    array = np.empty(count, dtype=object)
    array[:] = values
    return tensor.Tensor(item.name, BYTES, shape, array.reshape(shape))


def parameters_of(parameters: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in parameters.items():
        choice = value.WhichOneof("parameter_choice")
        if choice is not None:
            out[key] = getattr(value, choice)
    return out


def _parameter(value: object) -> pb.InferParameter:
    if isinstance(value, bool):
        return pb.InferParameter(bool_param=value)
    if isinstance(value, int):
        return pb.InferParameter(int64_param=value)
    if isinstance(value, float):
        return pb.InferParameter(double_param=value)
    return pb.InferParameter(string_param=str(value))


def infer_response(response: InferResponse, *, raw: bool) -> pb.ModelInferResponse:
    """The protobuf answer; ``raw`` (the request sent raw inputs) puts outputs in
    ``raw_output_contents``, else in typed ``contents``."""
    message = pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version,
        id=response.id or "",
    )
    for key, value in response.parameters.items():
        message.parameters[key].CopyFrom(_parameter(value))
    for output in response.outputs:
        entry = message.outputs.add(name=output.name, datatype=output.datatype, shape=output.shape)
        for key, value in output.parameters.items():
            entry.parameters[key].CopyFrom(_parameter(value))
        if raw:
            message.raw_output_contents.append(tensor.to_raw(output))
        elif output.datatype == BYTES:
            entry.contents.bytes_contents.extend(output.data.ravel().tolist())
        else:
            getattr(entry.contents, _CONTENTS_FIELD[output.datatype]).extend(
                output.data.ravel().tolist()
            )
    return message
