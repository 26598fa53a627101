"""LitServe serving one joblib model with its batching (run by the litserve venv's python).

Same request and response shape as modelserve's /predict: ``{"features": [...]}`` in,
label, confidence and probabilities out; one ``predict_proba`` call per batch.
Usage: ``python litserve_server.py --model-path FILE --port PORT [--max-batch-size 64]
[--batch-timeout 0.005]``.
"""

# No `from __future__ import annotations`: LitServe reads decode_request's annotation at
# run time to build its route, and a string annotation turns the body into a query parameter.
import argparse
from typing import Any

import joblib
import litserve as ls  # type: ignore[import-not-found]  # lives in the peer's own venv
import numpy as np

LABELS = ["setosa", "versicolor", "virginica"]


class IrisAPI(ls.LitAPI):  # type: ignore[misc]  # LitAPI is untyped (Any) here
    """decode → batch → predict_proba → unbatch → encode."""

    def __init__(self, model_path: str, max_batch_size: int, batch_timeout: float) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.model_path = model_path

    def setup(self, device: str) -> None:
        self.model = joblib.load(self.model_path)

    def decode_request(self, request: dict[str, Any]) -> list[float]:
        features: list[float] = request["features"]
        return features

    def batch(self, inputs: list[list[float]]) -> np.ndarray[Any, Any]:
        return np.asarray(inputs, dtype=np.float64)

    def predict(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        proba: np.ndarray[Any, Any] = self.model.predict_proba(x)
        return proba

    def unbatch(self, output: np.ndarray[Any, Any]) -> list[np.ndarray[Any, Any]]:
        return list(output)

    def encode_response(self, proba: np.ndarray[Any, Any]) -> dict[str, Any]:
        best = int(np.argmax(proba))
        return {
            "prediction": LABELS[best],
            "confidence": float(proba[best]),
            "probabilities": {name: float(p) for name, p in zip(LABELS, proba, strict=True)},
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--batch-timeout", type=float, default=0.005)
    args = parser.parse_args()
    api = IrisAPI(args.model_path, args.max_batch_size, args.batch_timeout)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
