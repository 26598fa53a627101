"""Process health state shared by the probes and the request path."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class HealthState:
    """Liveness facts of this process. ``draining`` turns true on SIGTERM and never back."""

    started_at: float = field(default_factory=time.time)
    draining: bool = False
    accepting: bool = True
    loading_done: bool = False
    control_synced: bool = True
    """False from start-up until the shared desired state was first read and applied."""
    drain_started: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    """Set with ``draining``: what other servers in the process (gRPC) wait on to drain too."""
    draining_since: float | None = None
    """``time.monotonic()`` of the signal that started the shutdown."""

    def start_draining(self) -> None:
        """Fail readiness at once; predictions are still served until ``stop_accepting``."""
        self.draining = True
        self.drain_started.set()
        if self.draining_since is None:
            self.draining_since = time.monotonic()

    def drain_time_left(self, prestop_delay_s: float, grace_period_s: float) -> float:
        """What is left of the shutdown's time budget (the pre-stop delay plus the grace
        period, from the signal), for the work still to drain; the whole grace period when
        no signal started the shutdown."""
        if self.draining_since is None:
            return grace_period_s
        elapsed = time.monotonic() - self.draining_since
        return max(prestop_delay_s + grace_period_s - elapsed, 0.0)

    def stop_accepting(self) -> None:
        """New predictions are refused with 503 shutting_down from now on."""
        self.start_draining()
        self.accepting = False

    def readiness(self, models_ready: bool, reasons: list[str]) -> tuple[bool, list[str]]:
        """The process's readiness given its models': never while draining or still loading."""
        if self.draining:
            return False, ["shutting down", *reasons]
        if not self.loading_done and models_ready:
            return False, ["models are loading"]
        if not self.control_synced and models_ready:
            return False, ["the shared control state is not applied yet"]
        return models_ready, reasons

    @property
    def uptime_s(self) -> float:
        return time.time() - self.started_at
