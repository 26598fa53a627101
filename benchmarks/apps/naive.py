"""The seed-style baseline: FastAPI calling the model on the event loop.

``@app.post("/predict")`` with a Pydantic body, ``model.predict`` and ``model.predict_proba``
inside the async handler, a dict out: what a first version of a model server usually looks
like. Runs under uvicorn with uvloop and httptools, one process, no access log (so the
baseline is not handicapped by logging modelserve does).
Usage: ``python -m benchmarks.apps.naive --port PORT --model NAME=PATH [--model ...]``.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import joblib
import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

LABELS = ["setosa", "versicolor", "virginica"]


class PredictRequest(BaseModel):
    features: list[float]


def create_app(models: dict[str, Any]) -> FastAPI:
    """A FastAPI app serving ``models`` by name on ``POST /predict?model=NAME``."""
    app = FastAPI()
    default = next(iter(models))

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    async def predict(body: PredictRequest, model: str = default) -> dict[str, Any]:
        if model not in models:
            raise HTTPException(status_code=404, detail=f"unknown model {model!r}")
        start = time.perf_counter()
        x = np.asarray([body.features], dtype=np.float64)
        label = models[model].predict(x)[0]
        proba = models[model].predict_proba(x)[0]
        return {
            "prediction": LABELS[int(label)],
            "confidence": float(proba.max()),
            "probabilities": {name: float(p) for name, p in zip(LABELS, proba, strict=True)},
            "model": model,
            "model_version": "1",
            "latency_ms": (time.perf_counter() - start) * 1000,
            "timestamp": datetime.now(UTC).isoformat(),
            "request_id": uuid.uuid4().hex,
        }

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", action="append", required=True, help="NAME=PATH")
    args = parser.parse_args(argv)
    models = {}
    for spec in args.model:
        name, _, path = spec.partition("=")
        models[name] = joblib.load(path)
    uvicorn.run(
        create_app(models),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
