"""V2 inference requests and responses as plain data, whatever transport carried them."""

from __future__ import annotations

from dataclasses import dataclass, field

from modelserve.v2.tensor import Parameters, Tensor


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An output the client asked for, with its parameters (``binary_data``,
    ``classification``)."""

    name: str
    parameters: Parameters = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InferRequest:
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None = None
    """None: every output the model produces."""
    id: str | None = None
    parameters: Parameters = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InferResponse:
    model_name: str
    model_version: str
    outputs: list[Tensor]
    id: str | None = None
    parameters: Parameters = field(default_factory=dict)
