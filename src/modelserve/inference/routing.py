"""Which version answers a request that names none: default, weighted canary, sticky callers.

A :class:`VersionRouter` is immutable once built. The admin API changes a model's routing by
building a new router and replacing the old one in a single assignment, so every request sees
either the old routing or the new one, never a mix.
"""

from __future__ import annotations

import bisect
import hashlib
import random

from modelserve.settings import RoutingConfig

_HASH_SPACE = float(1 << 64)


class VersionRouter:
    """Routing state of one model: its default version and its :class:`RoutingConfig`."""

    def __init__(self, default_version: str, config: RoutingConfig) -> None:
        self.default_version = default_version
        self.config = config.model_copy(deep=True)  # never shared with a mutable settings tree
        self._versions: list[str] = []
        self._cumulative: list[float] = []
        self._share: dict[str, float] = {}
        if config.weights:
            total = sum(config.weights.values())
            running = 0.0
            for version, weight in config.weights.items():
                if weight > 0:
                    running += weight / total
                    self._versions.append(version)
                    self._cumulative.append(running)
                    self._share[version] = weight / total
        else:
            self._share[default_version] = 1.0

    @property
    def shadow(self) -> str | None:
        return self.config.shadow

    @property
    def needs_caller(self) -> bool:
        """Sticky and split: without a caller a request is routed at random."""
        return self.config.sticky and bool(self._versions)

    def choose(self, caller: str | None) -> str:
        """A version by weight; with ``sticky`` the same caller always lands on the same one."""
        if not self._versions:
            return self.default_version
        # random is fine here: traffic splitting, not security.
        point = _stable_unit(caller) if self.config.sticky and caller else random.random()  # noqa: S311
        index = min(bisect.bisect_right(self._cumulative, point), len(self._versions) - 1)
        return self._versions[index]

    def share(self, version: str) -> float:
        """Fraction (0 to 1) of the requests naming no version that ``version`` receives."""
        return self._share.get(version, 0.0)

    def roles(self) -> dict[str, str]:
        """Every version this routing depends on, with why: default, its weight, or shadow."""
        named: dict[str, str] = {}
        for version, weight in (self.config.weights or {}).items():
            if weight > 0:
                named[version] = f"weight {weight:g}"
        if self.config.shadow is not None:
            named.setdefault(self.config.shadow, "shadow")
        named[self.default_version] = "default"
        return named


def _stable_unit(caller: str) -> float:
    """A number in [0, 1) that depends only on ``caller``, identical in every replica."""
    digest = hashlib.blake2b(caller.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _HASH_SPACE
