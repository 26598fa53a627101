"""The inference layer and the domain errors stay transport-neutral: no web or gRPC imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap

TRANSPORTS = ("fastapi", "starlette", "grpc", "httpx", "uvicorn", "gunicorn", "h11", "httptools")
ADAPTERS = ("modelserve.api", "modelserve.rpc", "modelserve.v2", "modelserve.app")


def test_inference_and_errors_import_no_transport() -> None:
    """Importing every inference module and ``modelserve.errors`` loads no HTTP or gRPC
    package and no adapter, directly or through what they import."""
    script = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys
        import modelserve.errors, modelserve.inference as inference
        for module in pkgutil.walk_packages(inference.__path__, "modelserve.inference."):
            importlib.import_module(module.name)
        print("\\n".join(
            name for name in sys.modules
            if name.split(".")[0] in {TRANSPORTS!r} or name.startswith({ADAPTERS!r})
        ))
        """
    )
    found = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert found == []
