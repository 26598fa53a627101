"""The dashboard with protect_metrics on: the browser asks for the key and the page can poll."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelserve.api.auth import presented_key
from modelserve.settings import Settings

KEY = "dash-unit-3c4d5e6f708192a3b4c5d6e7f8091a2b"


def basic(password: str, user: str = "anyone") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def protected(settings_factory: Callable[..., Settings], demo_models_dir: Path) -> Settings:
    return settings_factory(
        models=[{"name": "iris", "path": str(demo_models_dir / "iris.joblib")}],
        auth={
            "enabled": True,
            "protect_metrics": True,
            "keys": [{"name": "ops", "key": KEY, "scopes": ["predict"]}],
        },
    )


async def test_dashboard_without_key_makes_the_browser_ask(
    app_client: Callable[..., Any], protected: Settings
) -> None:
    """The page's 401 carries a Basic challenge, so a browser prompts for the key."""
    async with app_client(protected) as client:
        response = await client.get("/dashboard")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Basic realm="modelserve"')


@pytest.mark.parametrize("path", ["/dashboard", "/stats", "/dashboard/static/dashboard.js"])
async def test_dashboard_and_stats_accept_the_key_the_browser_sends(
    app_client: Callable[..., Any], protected: Settings, path: str
) -> None:
    """With the key typed into the prompt (Basic, key as password) page, data and assets load."""
    async with app_client(protected) as client:
        response = await client.get(path, headers=basic(KEY))
    assert response.status_code == 200


def test_presented_key_reads_basic_password_only_when_well_formed() -> None:
    """Basic credentials give the password; malformed ones give no key at all."""
    assert presented_key([(b"authorization", basic(KEY)["Authorization"].encode())]) == KEY
    assert presented_key([(b"authorization", b"Basic not-base64!")]) is None
    assert presented_key([(b"authorization", b"Basic " + base64.b64encode(b"nocolon"))]) is None


@pytest.mark.parametrize(
    "password", [KEY, "a:key:with:colons", "clé-ünïcode"], ids=["key", "colons", "utf-8"]
)
def test_presented_key_is_everything_after_the_first_colon(password: str) -> None:
    """The password is the rest of the credentials after the user name, colons included."""
    header = basic(password)["Authorization"].encode()
    assert presented_key([(b"authorization", header)]) == password


def test_presented_key_refuses_base64_with_stray_characters() -> None:
    """Credentials with characters outside base64 are malformed, not silently cleaned up."""
    token = base64.b64encode(f"anyone:{KEY}".encode())
    stray = token[:8] + b"*" + token[8:]
    assert presented_key([(b"authorization", b"Basic " + stray)]) is None
