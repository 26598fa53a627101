"""The image and the compose file are secure as shipped: auth on with keys supplied at run time,
models and config owned by root and read-only, and no unauthenticated API beyond loopback."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from modelserve.api.auth import withheld_reason
from modelserve.settings import Settings, load_settings, unauthenticated_exposure

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DIGEST = "0" * 64


def final_stage() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile's last stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    instructions = [
        tuple(line.strip().split(None, 1))
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    last_from = max(i for i, (name, *_) in enumerate(instructions) if name == "FROM")
    return [(name.upper(), args) for name, args in instructions[last_from:]]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for name, args in final_stage():
        if name == "ENV":
            env.update(item.partition("=")[::2] for item in shlex.split(args))
    return env


def example_keys() -> dict[str, str]:
    """deploy/api-keys.env.example with its placeholders replaced by well-formed digests."""
    lines = (DEPLOY / "api-keys.env.example").read_text().splitlines()
    pairs = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {k: re.sub(r"REPLACE_WITH_[A-Z0-9_]+", DIGEST, v) for k, v in pairs.items()}


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in env.items():
        if key.startswith("MODELSERVE_"):
            monkeypatch.setenv(key, value)
    return load_settings()


def test_image_serves_on_every_interface_with_auth_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The image's environment plus the example keys: auth on, so serving on 0.0.0.0 is allowed
    and the admin API is served to the ops key."""
    settings = settings_from({**image_env(), **example_keys()}, monkeypatch)

    assert settings.server.host == "0.0.0.0"
    assert settings.auth.enabled
    assert unauthenticated_exposure(settings) is None
    assert withheld_reason(settings.auth, "admin") is None


def test_image_without_keys_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """The image's environment alone fails to load, naming the variable that supplies keys."""
    with pytest.raises(ValueError, match="MODELSERVE_AUTH__KEYS"):
        settings_from(image_env(), monkeypatch)


def test_example_keys_are_refused_until_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example file's placeholders are not digests: a copy left unedited cannot start."""
    lines = (DEPLOY / "api-keys.env.example").read_text().splitlines()
    raw = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    with pytest.raises(ValueError, match="sha256 must be the 64 hexadecimal characters"):
        settings_from({**image_env(), **raw}, monkeypatch)


def test_image_checks_the_models_before_auth_is_on() -> None:
    """`modelserve check` runs at build time, before the ENV that turns auth on (no keys then)."""
    stage = final_stage()
    check = next(i for i, (name, args) in enumerate(stage) if "modelserve check" in args)
    auth_on = next(i for i, (name, args) in enumerate(stage) if "MODELSERVE_AUTH__ENABLED" in args)
    assert check < auth_on


def test_image_runs_as_the_unprivileged_user_after_the_models_are_made() -> None:
    """USER comes after every RUN, and nothing hands /models to the runtime user."""
    stage = final_stage()
    user = [i for i, (name, _) in enumerate(stage) if name == "USER"]
    runs = [i for i, (name, _) in enumerate(stage) if name == "RUN"]
    assert [stage[i][1] for i in user] == ["modelserve"]
    assert max(runs) < user[0]
    assert not [args for name, args in stage if "chown" in args and "modelserve /" in args]


def test_image_models_step_leaves_root_owned_read_only_files(
    tmp_path: Path, demo_models_dir: Path
) -> None:
    """The Dockerfile's /models step makes the demo models, then its ownership and mode
    commands, run here on a copy of the demo models, leave every file and folder owned by
    root with no write permission for anyone."""
    if os.geteuid() != 0:
        pytest.fail("this test runs the image's chown step and needs root, as the suite does")
    (step,) = [args for name, args in final_stage() if name == "RUN" and "/models" in args]
    commands = [command.strip() for command in step.split("&&")]
    assert commands[0] == "modelserve demo --out /models"
    out = tmp_path / "models"
    shutil.copytree(demo_models_dir, out)
    for command in commands:
        if command.split()[0] in ("chown", "chmod"):
            subprocess.run(
                ["/bin/sh", "-c", re.sub(r"/models(?=/|\s|$)", str(out), command)], check=True
            )

    assert (out / "modelserve.yaml").is_file()
    for path in [out, *out.rglob("*")]:
        info = path.stat()
        assert info.st_uid == 0, path
        assert info.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) == 0, path


def test_compose_takes_keys_from_an_env_file_that_git_ignores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The compose service reads deploy/api-keys.env (an example ships, the file is ignored);
    with it, the replicas run with auth on."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    service = compose["services"]["modelserve"]
    ignored = subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", "-q", "deploy/api-keys.env"],
        check=False,
    )

    assert service["env_file"] == ["api-keys.env"]
    assert (DEPLOY / "api-keys.env.example").is_file()
    assert ignored.returncode == 0
    settings = settings_from(
        {**image_env(), **service["environment"], **example_keys()}, monkeypatch
    )
    assert settings.auth.enabled
    assert unauthenticated_exposure(settings) is None
