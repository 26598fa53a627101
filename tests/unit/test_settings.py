"""Settings: precedence flags > env > file > defaults, strict keys, path resolution, validators."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from modelserve.settings import (
    AuthSettings,
    ModelConfig,
    Settings,
    load_settings,
    unauthenticated_exposure,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MODELSERVE_* variable from the developer's shell leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("MODELSERVE_"):
            monkeypatch.delenv(name)


def write_config(directory: Path, data: Any, name: str = "modelserve.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(data))
    return path


def model(**fields: Any) -> dict[str, Any]:
    return {"name": "iris", "path": "iris.joblib", **fields}


def test_load_settings_defaults_without_a_file() -> None:
    """With no file, env or flags every value is its documented default."""
    settings = load_settings()
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8000)
    assert settings.server.max_body_bytes is None
    assert settings.server.max_batch_rows == 1000
    assert settings.models == []


def test_load_settings_file_overrides_defaults(tmp_path: Path) -> None:
    """A value in the YAML file replaces the default."""
    path = write_config(tmp_path, {"server": {"port": 9001}})
    assert load_settings(path).server.port == 9001


def test_load_settings_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MODELSERVE_SERVER__PORT beats the file's server.port."""
    path = write_config(tmp_path, {"server": {"port": 9001}})
    monkeypatch.setenv("MODELSERVE_SERVER__PORT", "9002")
    assert load_settings(path).server.port == 9002


def test_load_settings_flags_override_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An override passed like a CLI flag beats the environment."""
    path = write_config(tmp_path, {"server": {"port": 9001}})
    monkeypatch.setenv("MODELSERVE_SERVER__PORT", "9002")
    assert load_settings(path, server={"port": 9003}).server.port == 9003


def test_load_settings_flags_merge_into_file_sections(tmp_path: Path) -> None:
    """A flag for one key of a section keeps the file's other keys of that section."""
    path = write_config(tmp_path, {"server": {"port": 9001, "log_level": "warning"}})
    settings = load_settings(path, server={"port": 9003})
    assert (settings.server.port, settings.server.log_level) == (9003, "warning")


def test_load_settings_env_fills_keys_the_file_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An env value for a key absent from the file applies beside the file's keys."""
    path = write_config(tmp_path, {"server": {"port": 9001}})
    monkeypatch.setenv("MODELSERVE_SERVER__MAX_BATCH_ROWS", "7")
    settings = load_settings(path)
    assert (settings.server.port, settings.server.max_batch_rows) == (9001, 7)


@pytest.mark.parametrize(
    "data",
    [
        {"server": {"prot": 9000}},
        {"modles": []},
        {"models": [model(lables=["a"])]},
        {"models": [model(batching={"max_batchsize": 4})]},
    ],
    ids=["server-key", "top-level-key", "model-key", "batching-key"],
)
def test_load_settings_rejects_misspelt_keys(tmp_path: Path, data: dict[str, Any]) -> None:
    """A key the schema does not know is an error, not silently ignored."""
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        load_settings(write_config(tmp_path, data))


def test_load_settings_rejects_misspelt_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt nested MODELSERVE_ variable is an error too."""
    monkeypatch.setenv("MODELSERVE_SERVER__PROT", "9000")
    with pytest.raises(ValidationError, match=r"server\.prot"):
        load_settings()


def test_load_settings_missing_file_raises(tmp_path: Path) -> None:
    """A config path that does not exist is refused with its name."""
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        load_settings(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("server: [\n", "not valid YAML"),
        ("- a\n- b\n", "mapping"),
        ("just a string\n", "mapping"),
    ],
    ids=["syntax-error", "list-root", "scalar-root"],
)
def test_load_settings_broken_yaml_raises_value_error(
    tmp_path: Path, text: str, message: str
) -> None:
    """A file that is not a YAML mapping raises a ValueError naming the file."""
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        load_settings(path)
    assert "broken.yaml" in str(info.value)


def test_load_settings_empty_file_gives_defaults(tmp_path: Path) -> None:
    """An empty file is a valid config with every default."""
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_settings(path).server.port == 8000


def test_load_settings_resolves_relative_paths_against_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Model, pre-processor and profile paths are relative to the file, not the cwd."""
    config_dir = tmp_path / "conf"
    config_dir.mkdir()
    monkeypatch.chdir(tmp_path)
    entry = model(
        path="models/iris.joblib",
        preprocessor={"path": "pre.joblib"},
        profile="profiles/iris.json",
    )
    loaded = load_settings(write_config(config_dir, {"models": [entry]})).models[0]
    assert loaded.path == config_dir / "models" / "iris.joblib"
    assert loaded.preprocessor is not None
    assert loaded.preprocessor.path == config_dir / "pre.joblib"
    assert loaded.profile == config_dir / "profiles" / "iris.json"


def test_load_settings_keeps_absolute_paths(tmp_path: Path) -> None:
    """An absolute model path is used as written."""
    absolute = tmp_path / "elsewhere" / "iris.joblib"
    path = write_config(tmp_path, {"models": [model(path=str(absolute))]})
    assert load_settings(path).models[0].path == absolute


def test_load_settings_flag_models_replace_file_models(tmp_path: Path) -> None:
    """Models given as an override (the CLI's MODEL_PATH) are the ones served."""
    path = write_config(tmp_path, {"models": [model()]})
    settings = load_settings(path, models=[{"name": "other", "path": str(tmp_path / "o.pkl")}])
    assert [m.name for m in settings.models] == ["other"]


@pytest.mark.parametrize(
    ("digest", "ok"),
    [
        ("ab" * 32, True),
        ("AB" * 32, True),
        ("ab" * 31, False),
        ("zz" * 32, False),
    ],
    ids=["lower-hex", "upper-hex", "too-short", "not-hex"],
)
def test_model_config_sha256_must_be_64_hex(digest: str, ok: bool) -> None:
    """A pinned digest must be 64 hex characters; it is stored lower-case."""
    if ok:
        assert ModelConfig(name="m", path=Path("m.pkl"), sha256=digest).sha256 == digest.lower()
    else:
        with pytest.raises(ValidationError, match="64 hexadecimal"):
            ModelConfig(name="m", path=Path("m.pkl"), sha256=digest)


@pytest.mark.parametrize("name", ["", "-leading-dash", "has space", "a/b", "x" * 65], ids=str)
def test_model_config_rejects_unsafe_names(name: str) -> None:
    """Model names are short identifiers usable in URLs and metric labels."""
    with pytest.raises(ValidationError, match="name"):
        ModelConfig(name=name, path=Path("m.pkl"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"models": [model(), model()]}, "listed twice"),
        ({"models": [model()], "default_model": "nope"}, "not a configured model"),
        (
            {"models": [model(default=True), model(version="2", default=True)]},
            "more than one default",
        ),
        ({"models": [model()], "routing": {"nope": {}}}, "unknown model"),
        (
            {"models": [model()], "routing": {"iris": {"weights": {"9": 1}}}},
            "unknown versions",
        ),
        (
            {"models": [model()], "routing": {"iris": {"weights": {"1": -1}}}},
            "non-negative",
        ),
        ({"auth": {"enabled": True}}, "at least one key"),
        ({"auth": {"keys": [{"name": "k"}]}}, "exactly one of sha256 or key"),
        ({"cache": {"backend": "redis"}}, "redis_url"),
        ({"cache": {"backend": "redis"}, "redis_url": "redis://r:6379/0"}, "key_secret"),
        ({"cache": {"key_secret": "short"}}, "at least 32 characters"),
        ({"server": {"port": 70000}}, "port"),
        ({"server": {"max_body_bytes": 10}}, "max_body_bytes"),
        ({"models": [model(batching={"max_batch_size": 0})]}, "max_batch_size"),
    ],
    ids=[
        "duplicate-version",
        "unknown-default-model",
        "two-defaults",
        "routing-unknown-model",
        "routing-unknown-version",
        "negative-weight",
        "auth-without-keys",
        "api-key-without-secret",
        "redis-without-url",
        "redis-cache-without-key-secret",
        "short-key-secret",
        "port-out-of-range",
        "tiny-body-limit",
        "zero-batch-size",
    ],
)
def test_settings_validators_refuse_impossible_values(data: dict[str, Any], message: str) -> None:
    """Impossible or unsafe combinations fail at load time with a message naming them."""
    with pytest.raises(ValidationError, match=message):
        Settings(**data)


def test_settings_have_a_docstring_for_every_field() -> None:
    """Every settings field carries the description the README reference is built from."""
    from pydantic import BaseModel

    missing: list[str] = []
    seen: set[type[BaseModel]] = set()

    def visit(cls: type[BaseModel], prefix: str) -> None:
        if cls in seen:
            return
        seen.add(cls)
        for name, field in cls.model_fields.items():
            if not field.description:
                missing.append(prefix + name)
            for arg in _model_types(field.annotation):
                visit(arg, f"{prefix}{name}.")

    visit(Settings, "")
    assert missing == []


def _model_types(annotation: Any) -> list[type[Any]]:
    """The BaseModel classes inside a (possibly generic or optional) annotation."""
    from typing import get_args

    from pydantic import BaseModel

    found: list[type[Any]] = []
    stack = [annotation]
    while stack:
        current = stack.pop()
        if isinstance(current, type) and issubclass(current, BaseModel):
            found.append(current)
        stack.extend(get_args(current))
    return found


@pytest.mark.parametrize(
    ("models", "explicit", "expected"),
    [
        ([], None, 2 * 1000 * 100 * 24 + 64 * 1024),
        ([model(n_features=4)], None, 2 * 1000 * 4 * 24 + 64 * 1024),
        ([model(feature_names=["ab", "c"])], None, 2 * 1000 * (30 + 29) + 64 * 1024),
        ([model(n_features=4), model(name="wide", n_features=8)], None, 2 * 1000 * 8 * 24 + 65536),
        ([model(n_features=4)], 5000, 5000),
    ],
    ids=["no-models", "declared-width", "named", "widest-wins", "explicit"],
)
def test_body_limit_derives_from_rows_and_the_widest_model(
    models: list[dict[str, Any]], explicit: int | None, expected: int
) -> None:
    """Unset, the body limit is twice max_batch_rows rows of the widest model, plus 64 KiB."""
    settings = Settings(models=models, server={"max_body_bytes": explicit})
    assert settings.body_limit_bytes() == expected


@pytest.mark.parametrize(
    ("host", "auth", "allow", "refused"),
    [
        ("127.0.0.1", False, False, False),
        ("127.0.0.2", False, False, False),
        ("::1", False, False, False),
        ("localhost", False, False, False),
        ("0.0.0.0", False, False, True),
        ("::", False, False, True),
        ("10.1.2.3", False, False, True),
        ("model-host.internal", False, False, True),
        ("0.0.0.0", True, False, False),
        ("0.0.0.0", False, True, False),
    ],
)
def test_settings_unauthenticated_exposure_beyond_loopback(
    host: str, auth: bool, allow: bool, refused: bool
) -> None:
    """Only a non-loopback address with auth off and no explicit allowance is refused."""
    keys = [{"name": "k", "key": "secret-key-value", "scopes": ["predict"]}]
    settings = Settings(
        server={"host": host, "allow_unauthenticated": allow},
        auth={"enabled": auth, "keys": keys},
    )
    problem = unauthenticated_exposure(settings)
    assert (problem is not None) == refused
    if problem is not None:
        assert "--allow-unauthenticated" in problem
        assert "auth.enabled" in problem


def test_settings_protect_metrics_defaults_to_on() -> None:
    """With auth on, /metrics, /stats and /dashboard need a key unless told otherwise."""
    assert AuthSettings().protect_metrics is True


def test_settings_failed_auth_limit_takes_one_limit() -> None:
    """A malformed or multiple failed_auth_limit is refused with the expected form."""
    for bad in ("lots", "5/minute; 1/second"):
        with pytest.raises(ValidationError, match="30/minute"):
            AuthSettings(failed_auth_limit=bad)


def test_model_config_refuses_process_isolation_for_user_code() -> None:
    """`format: python` finds its own files, so it cannot be handed verified bytes."""
    with pytest.raises(ValidationError, match="isolation process needs a file"):
        ModelConfig(name="m", path=Path("pkg.mod:Model"), format="python", isolation="process")


def test_model_config_isolation_defaults_to_thread() -> None:
    """A version runs in the serving process's threads unless it asks for a process."""
    assert ModelConfig(name="m", path=Path("m.joblib")).isolation == "thread"
