"""The control state documents: hostile values read back from a store are refused."""

from __future__ import annotations

import pytest

from modelserve.control.state import (
    MAX_DOCUMENT_BYTES,
    DesiredState,
    RefusedDocumentError,
    parse_report,
    parse_state,
)
from modelserve.inference.coordination import ConfigAction, RoutingAction, VersionAction
from modelserve.settings import RoutingConfig


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"not json", "invalid"),
        (b'{"version": -1}', "version"),
        (b'{"version": 1, "models": {"../etc": {}}}', "models"),
        (b'{"version": 1, "models": {"iris": {"routing": {"weights": {"2": -1}}}}}', "weights"),
        (b'{"version": 1, "models": {"iris": {"routing": {"weights": {"2": 1e999}}}}}', "routing"),
        (b'{"version": 1, "models": {"iris": {"path": "/etc/passwd"}}}', "path"),
        (b'{"version": 1, "models": {"iris": {"versions": {"1": {"loaded": "yes"}}}}}', "loaded"),
        (b'{"version": 1, "extra": true}', "extra"),
        (b" " * (MAX_DOCUMENT_BYTES + 1), "larger than"),
    ],
    ids=[
        "not-json",
        "negative-version",
        "bad-model-name",
        "negative-weight",
        "infinite-weight",
        "a-path",
        "not-a-bool",
        "unknown-field",
        "too-large",
    ],
)
def test_parse_state_refuses_hostile_documents(document: bytes, reason: str) -> None:
    """Each hostile document raises RefusedDocumentError whose message says what is wrong."""
    with pytest.raises(RefusedDocumentError, match=reason):
        parse_state(document)


def test_parse_report_refuses_a_bad_process_name() -> None:
    """A report naming a process with characters outside the identity pattern is refused."""
    raw = b'{"process": "a b\\n", "applied_version": 1, "seen_version": 1}'
    with pytest.raises(RefusedDocumentError, match="process"):
        parse_report(raw)


def test_desired_state_actions_raise_the_version_and_the_reload_generation() -> None:
    """Every action gives a higher version; a reload raises that version's generation; the
    version never falls below the writer's floor (a store that lost its state)."""
    state = DesiredState()
    state = state.with_action(RoutingAction("iris", "2", RoutingConfig(sticky=True)))
    state = state.with_action(VersionAction("iris", "1", "reload"))
    state = state.with_action(VersionAction("iris", "1", "reload"))
    state = state.with_action(VersionAction("iris", "3", "unload"), floor=10)
    assert state.version == 11
    intent = state.models["iris"]
    assert (intent.default_version, intent.routing) == ("2", RoutingConfig(sticky=True))
    assert intent.versions["1"].reload_generation == 2
    assert intent.versions["3"].loaded is False
    assert parse_state(state.to_json()) == state


def test_a_config_action_drops_admin_changes_but_keeps_reload_generations() -> None:
    """A new config file replaces routing and load states; reload generations carry on, and
    recording the same file twice (a second process) changes nothing."""
    digest = "ab" * 32
    state = DesiredState().with_action(RoutingAction("iris", "2", RoutingConfig()))
    state = state.with_action(VersionAction("iris", "1", "reload"))
    state = state.with_action(VersionAction("iris", "3", "unload"))
    config = state.with_action(ConfigAction(digest))
    assert (config.version, config.config_sha256) == (4, digest)
    assert config.models["iris"].routing is None
    assert set(config.models["iris"].versions) == {"1"}
    assert config.models["iris"].versions["1"].reload_generation == 1
    assert config.with_action(ConfigAction(digest)) is config
