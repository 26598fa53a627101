"""Which version answers a request that names none: default, weighted canary, sticky callers."""

from __future__ import annotations

import bisect
import hashlib
import random

from modelserve.settings import RoutingConfig

_HASH_SPACE = float(1 << 64)


class VersionRouter:
    """Routing state of one model. Replaced atomically by the admin API (one assignment)."""

    def __init__(self, default_version: str, config: RoutingConfig) -> None:
        self.default_version = default_version
        self.config = config
        self._versions: list[str] = []
        self._cumulative: list[float] = []
        if config.weights:
            total = sum(config.weights.values())
            running = 0.0
            for version, weight in config.weights.items():
                if weight > 0:
                    running += weight / total
                    self._versions.append(version)
                    self._cumulative.append(running)

    @property
    def shadow(self) -> str | None:
        return self.config.shadow

    def choose(self, caller: str | None) -> str:
        """A version by weight; with ``sticky`` the same caller always lands on the same one."""
        if not self._versions:
            return self.default_version
        # random is fine here: traffic splitting, not security.
        point = _stable_unit(caller) if self.config.sticky and caller else random.random()  # noqa: S311
        index = min(bisect.bisect_right(self._cumulative, point), len(self._versions) - 1)
        return self._versions[index]


def _stable_unit(caller: str) -> float:
    """A number in [0, 1) that depends only on ``caller``, identical in every replica."""
    digest = hashlib.blake2b(caller.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _HASH_SPACE
