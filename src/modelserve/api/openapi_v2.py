"""OpenAPI entries for the Open Inference Protocol (V2 REST) routes, after KServe's
``rest_predict_v2.yaml``: the shapes of its bodies as JSON schema, and one operation per route."""

from __future__ import annotations

from typing import Any, Final

from modelserve.api.route_table import PlainDoc

_REF: Final = "#/components/schemas/{}"
_TAG: Final = "open inference protocol"

_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {
        "oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]
    },
}
_SHAPE: dict[str, Any] = {"type": "array", "items": {"type": "integer"}}
_DATATYPE: dict[str, Any] = {
    "type": "string",
    "enum": [
        "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
        "FP16", "FP32", "FP64", "BYTES",
    ],
}  # fmt: skip

COMPONENTS: Final[dict[str, Any]] = {
    "V2Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "V2ServerMetadata": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "V2TensorMetadata": {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {"name": {"type": "string"}, "datatype": _DATATYPE, "shape": _SHAPE},
    },
    "V2ModelMetadata": {
        "type": "object",
        "required": ["name", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string", "examples": ["sklearn_joblib", "onnx_onnxv1"]},
            "inputs": {"type": "array", "items": {"$ref": _REF.format("V2TensorMetadata")}},
            "outputs": {"type": "array", "items": {"$ref": _REF.format("V2TensorMetadata")}},
        },
    },
    "V2Tensor": {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": _SHAPE,
            "datatype": _DATATYPE,
            "parameters": _PARAMETERS,
            "data": {
                "type": "array",
                "description": "Row-major, flat or nested; absent when the tensor travels in "
                "binary (parameters.binary_data_size).",
            },
        },
    },
    "V2InferenceRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": _PARAMETERS,
            "inputs": {"type": "array", "items": {"$ref": _REF.format("V2Tensor")}},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "parameters": _PARAMETERS},
                },
            },
        },
    },
    "V2InferenceResponse": {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": _PARAMETERS,
            "outputs": {"type": "array", "items": {"$ref": _REF.format("V2Tensor")}},
        },
    },
}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(schema)}}},
    }


def _errors(*codes: str) -> dict[str, Any]:
    texts = {
        "400": "Bad arguments: a body that is not JSON; for infer also a shape or data-length "
        "mismatch, an unknown datatype, input or output.",
        "401": "Missing or invalid API key (when auth is enabled).",
        "403": "The API key lacks the scope.",
        "404": "Unknown model or version.",
        "409": "Refused (a failed load; unloading the version the routing names).",
        "413": "Body over server.max_body_bytes or rows over server.max_batch_rows.",
        "415": "The body is declared neither JSON nor (infer) the binary tensor extension.",
        "429": "Rate limited.",
        "500": "The model failed; no internals in the message.",
        "503": "Not ready, overloaded or shutting down (Retry-After).",
        "504": "Queue or inference deadline passed.",
    }
    return {code: _json("V2Error", texts[code]) for code in codes}


def _operation(
    summary: str, description: str, responses: dict[str, Any], body: str | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "summary": summary,
        "description": description,
        "tags": [_TAG],
        "responses": responses,
    }
    if body is not None:
        entry["requestBody"] = {
            "required": body == "V2InferenceRequest",
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(body)}},
                "application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"},
                    "description": "Binary tensor extension: the JSON header "
                    "(Inference-Header-Content-Length bytes), then each binary input's data.",
                },
            }
            if body == "V2InferenceRequest"
            else {"application/json": {"schema": {"type": "object"}}},
        }
    return entry


_EMPTY_200: Final = {"200": {"description": "True (empty body)."}}


def _health_200(field: str) -> dict[str, Any]:
    """A server health answer: the status says it, the body repeats it (as KServe's does)."""
    schema = {
        "type": "object",
        "properties": {field: {"type": "boolean"}},
        "required": [field],
    }
    return {"200": {"description": "True.", "content": {"application/json": {"schema": schema}}}}


_NAME: Final = "/v2/models/{name}"
_VERSION: Final = "/v2/models/{name}/versions/{version}"


def _model_operations() -> dict[str, tuple[str, dict[str, Any]]]:
    operations: dict[str, tuple[str, dict[str, Any]]] = {}
    for base in (_NAME, _VERSION):
        which = "the model's default version" if base == _NAME else "that version"
        operations[base] = (
            "get",
            _operation(
                "V2 model metadata",
                f"Platform, versions, inputs and outputs of {which} (-1: any size).",
                {"200": _json("V2ModelMetadata", "Metadata"), **_errors("404")},
            ),
        )
        operations[f"{base}/ready"] = (
            "get",
            _operation(
                "V2 model ready",
                f"200 when {which} serves.",
                {**_EMPTY_200, **_errors("404", "503")},
            ),
        )
        operations[f"{base}/infer"] = (
            "post",
            _operation(
                "V2 inference",
                f"Infer with {which}: one `input` tensor [rows, features] (or one input per "
                "named feature), any numeric datatype; outputs `label` (BYTES) and "
                "`probabilities` (FP64) for classifiers, `value` for regressors.",
                {
                    "200": _json("V2InferenceResponse", "Outputs (binary ones after the JSON)"),
                    **_errors("400", "401", "403", "404", "413", "415", "429", "500", "503", "504"),
                },
                "V2InferenceRequest",
            ),
        )
        operations[f"{base}/stats"] = (
            "get",
            _operation(
                "V2 statistics",
                f"Inference statistics of {which} (statistics extension).",
                {"200": {"description": "model_stats"}, **_errors("404")},
            ),
        )
    return operations


def v2_operations() -> dict[str, tuple[str, dict[str, Any]]]:
    """Path → (method, OpenAPI operation) for every V2 route."""
    return {
        "/v2/health/live": (
            "get",
            _operation("V2 server live", "200 while the process serves.", _health_200("live")),
        ),
        "/v2/health/ready": (
            "get",
            _operation(
                "V2 server ready",
                "200 when every required model serves and no drain began (as /ready).",
                {**_health_200("ready"), **_errors("503")},
            ),
        ),
        "/v2": (
            "get",
            _operation(
                "V2 server metadata",
                "Name, version and the extensions implemented.",
                {"200": _json("V2ServerMetadata", "Metadata")},
            ),
        ),
        "/v2/models/stats": (
            "get",
            _operation(
                "V2 statistics of every model",
                "Inference statistics of every version (statistics extension).",
                {"200": {"description": "model_stats"}},
            ),
        ),
        **_model_operations(),
        "/v2/repository/index": (
            "post",
            _operation(
                "V2 repository index",
                'Every configured version and its state; `{"ready": true}`: ready ones only. '
                "Admin scope; served only with auth on and an admin key.",
                {
                    "200": {"description": "name, version, state, reason"},
                    **_errors("400", "401", "403", "415"),
                },
                "object",
            ),
        ),
        "/v2/repository/models/{name}/load": (
            "post",
            _operation(
                "V2 repository load",
                "(Re)load the model's configured artifact; nothing else can be named. "
                'Optional `{"parameters": {"version": "..."}}`. Admin scope.',
                {
                    "200": {"description": "Loaded"},
                    **_errors("400", "401", "403", "404", "409", "415"),
                },
                "object",
            ),
        ),
        "/v2/repository/models/{name}/unload": (
            "post",
            _operation(
                "V2 repository unload",
                "Stop serving a version (503 until loaded again). Admin scope.",
                {
                    "200": {"description": "Unloaded"},
                    **_errors("400", "401", "403", "404", "409", "415"),
                },
                "object",
            ),
        ),
    }


def v2_doc(path: str) -> PlainDoc:
    """The declared OpenAPI entry of one V2 route, with the V2 schemas as components."""
    method, operation = v2_operations()[path]
    parameters = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
        for p in ("name", "version")
        if "{" + p + "}" in path
    ]
    operation_id = "v2" + path[3:].replace("/", "_").replace("{", "").replace("}", "")
    entry = {
        **operation,
        "operationId": f"{operation_id}_{method}",
        **({"parameters": parameters} if parameters else {}),
    }
    return PlainDoc(entry, components=COMPONENTS)
