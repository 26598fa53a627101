"""schemathesis against the live ``/openapi.json`` of a real server, every route.

The server serves the demo models with auth on and one key holding every scope, so the admin
API and the V2 repository are served too (and the key goes with every request: protected
routes are fuzzed past authentication). Each generated request must get a response that
the document declares for its operation, with the declared content type and body schema, and
no 5xx except a 503 or 504 the operation documents.

``make test`` runs FUZZ_EXAMPLES (default 8) examples per operation; ``make fuzz`` many more.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import RunningServer

FUZZ_KEY = "fuzz-every-scope-key-4c1e9b7a2d5f8e03"
HEADERS = {"Authorization": f"Bearer {FUZZ_KEY}"}
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))

# The time limit grows with the example count (make fuzz); the first module to build the demo
# models pays for that too.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300 + 30 * EXAMPLES)]
ALLOWED_5XX = {"503", "504"}


@pytest.fixture(scope="module")
def fuzzed_server(
    serve_modelserve_module: Callable[..., RunningServer], demo_models_dir: Path
) -> RunningServer:
    """The demo config with auth on: one key with the predict and admin scopes; failed
    authentications are not locked out (invalid cases may carry malformed credentials)."""
    keys = [{"name": "fuzz", "key": FUZZ_KEY, "scopes": ["predict", "admin"]}]
    env = {
        "MODELSERVE_AUTH__ENABLED": "true",
        "MODELSERVE_AUTH__KEYS": orjson.dumps(keys).decode(),
        "MODELSERVE_AUTH__FAILED_AUTH_LIMIT": "1000000/minute",
    }
    return serve_modelserve_module(demo_models_dir / "modelserve.yaml", env=env)


def not_an_undocumented_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 5xx, except a 503 or 504 the operation documents (not ready, overloaded, deadline)."""
    status = str(response.status_code)
    if status.startswith("5"):
        documented = set(case.operation.definition.raw.get("responses", {}))
        assert status in ALLOWED_5XX & documented, (
            f"{case.operation.label} answered {status}: {response.text[:300]}"
        )
    return None


CHECKS = [
    not_an_undocumented_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _fuzz(operation: Any, mode: GenerationMode) -> str | None:
    """Run EXAMPLES generated requests of ``mode`` against ``operation``; the first failure."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        case.call_and_validate(session=session, headers=HEADERS, checks=CHECKS, timeout=30)

    # One session per run, closed here: a session per call leaves its sockets to the garbage
    # collector, whose unclosed-socket warnings then fail whichever test is running.
    session = requests.Session()
    try:
        run()
    except Unsatisfiable:  # negative mode, nothing to break: no parameters, free-form strings
        assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no valid request"
    except Exception as exc:  # every check failure, reported together below
        return f"{operation.label} ({mode.value}): {type(exc).__name__}: {str(exc)[:2000]}"
    finally:
        session.close()
    return None


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_fuzz_every_route_answers_as_documented(
    fuzzed_server: RunningServer, mode: GenerationMode
) -> None:
    """Generated requests, valid (positive) or not (negative), to every operation of the live
    document get a documented status, content type and body, and no undocumented 5xx."""
    schema = schemathesis.openapi.from_url(fuzzed_server.base_url + "/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the live document does not load: {result.err()}"
        operations.append(result.ok())
    document = httpx.get(fuzzed_server.base_url + "/openapi.json", timeout=10).json()
    declared = {(m.upper(), path) for path, item in document["paths"].items() for m in item}
    assert {(op.method.upper(), op.path) for op in operations} == declared
    failures = [failure for op in operations if (failure := _fuzz(op, mode)) is not None]
    assert failures == [], "\n\n".join(failures)
