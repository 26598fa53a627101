"""Rate limits on a real server: rejected batches still cost, X-Forwarded-For hops must be IPs."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import IRIS_ONNX, ModuleServers, RunningServer

pytestmark = pytest.mark.e2e

SETOSA = [5.1, 3.5, 1.4, 0.2]
MAX_ROWS = 5


@pytest.fixture(scope="module")
def server(module_servers: ModuleServers) -> RunningServer:
    """Loopback is the trusted proxy, so each test picks its client with X-Forwarded-For."""
    config = {
        "models": [module_servers.iris(IRIS_ONNX)],
        "cache": {"backend": "none"},
        "server": {"max_batch_rows": MAX_ROWS},
        "rate_limit": {
            "enabled": True,
            "predict": "3/minute",
            "predict_batch": "3/minute",
            "count_rows": True,
            "trusted_proxies": ["127.0.0.1/32"],
        },
    }
    return module_servers.serve(config)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"batch": [' + b",".join([b"[5.1, 3.5, 1.4, 0.2]"] * (MAX_ROWS + 1)) + b"]}", 413),
        (b'{"batch": [[5.1, 3.5, 1.4, "x"]]}', 422),
        (b'{"batch": [[5.1, 3.5', 400),
    ],
    ids=["too-many-rows", "invalid-row", "broken-json"],
)
def test_count_rows_charges_refused_batches(
    server: RunningServer, body: bytes, status: int
) -> None:
    """Each refused batch costs 1 before its body is parsed: the 4th request is over the limit."""
    client_ip = {"413": "198.51.100.1", "422": "198.51.100.2", "400": "198.51.100.3"}[str(status)]
    headers = {"Content-Type": "application/json", "X-Forwarded-For": client_ip}
    url = server.base_url + "/predict-batch"
    refused = [httpx.post(url, content=body, headers=headers, timeout=10) for _ in range(3)]
    assert [r.status_code for r in refused] == [status] * 3
    valid = httpx.post(url, json={"batch": [SETOSA]}, headers=headers, timeout=10)
    assert valid.status_code == 429


def test_count_rows_charges_each_row_of_an_accepted_batch(server: RunningServer) -> None:
    """A 2-row batch costs 2 (1 before parsing, 1 after): of a budget of 3, 1 is left."""
    headers = {"X-Forwarded-For": "198.51.100.4"}
    url = server.base_url + "/predict-batch"
    response = httpx.post(url, json={"batch": [SETOSA] * 2}, headers=headers, timeout=10)
    assert (response.status_code, response.headers["x-ratelimit-remaining"]) == (200, "1")


def test_forwarded_hop_that_is_not_an_ip_is_no_identity(server: RunningServer) -> None:
    """Made-up X-Forwarded-For values all count as the peer, so rotating them gains nothing."""
    url = server.base_url + "/predict"
    statuses = [
        httpx.post(
            url, json={"features": SETOSA}, headers={"X-Forwarded-For": c * 100}, timeout=10
        ).status_code
        for c in "abcd"
    ]
    assert statuses == [200, 200, 200, 429]


def test_forwarded_addresses_count_in_canonical_form(server: RunningServer) -> None:
    """Spellings of one IPv6 address share one budget."""
    url = server.base_url + "/predict"
    spellings = ["2001:db8::7", "2001:DB8::7", "2001:db8:0::7", "2001:0db8::0:7"]
    statuses = [
        httpx.post(
            url, json={"features": SETOSA}, headers={"X-Forwarded-For": s}, timeout=10
        ).status_code
        for s in spellings
    ]
    assert statuses == [200, 200, 200, 429]
