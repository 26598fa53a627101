"""The HTTP ceiling: a bare Starlette route that parses the JSON body and returns a constant.

The constant has the size of modelserve's real /predict response, so the two move the same
bytes; run under uvicorn with uvloop and httptools, one process, no access log.
Usage: ``python -m benchmarks.apps.noop --port PORT --body-file FILE``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_OK = b'{"status":"ok"}'


def create_app(body: bytes) -> Starlette:
    """Routes /predict and /predict-batch (parse, answer ``body``) plus /health and /ready."""

    async def predict(request: Request) -> Response:
        json.loads(await request.body())
        return Response(body, media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(_OK, media_type="application/json")

    return Starlette(
        routes=[
            Route("/predict", predict, methods=["POST"]),
            Route("/predict-batch", predict, methods=["POST"]),
            Route("/health", health),
            Route("/ready", health),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    args = parser.parse_args(argv)
    app = create_app(args.body_file.read_bytes())
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
