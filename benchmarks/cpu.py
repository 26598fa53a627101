"""How much CPU something other than the benchmark used during a measurement.

The machine is shared: a test suite running beside a benchmark takes cores from the server
and the load generator alike. :class:`CpuMeter` reads the machine's busy time from
``/proc/stat`` and subtracts what the measured server (its process group), wrk (reaped
children) and this process used; the rest, in cores, is printed beside every result so a
noisy number can be recognised as one. Linux only; elsewhere it reports nothing.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PROC = Path("/proc")


def _machine_busy_s() -> float | None:
    try:
        fields = (_PROC / "stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system = (int(v) for v in fields[:3])
    # idle, iowait, irq and softirq are left out: interrupt time is charged to no process,
    # and most of it here is the benchmark's own loopback traffic.
    return (user + nice + system) / _TICKS


def group_cpu_s(pgid: int) -> float:
    """CPU seconds used so far by the live processes of process group ``pgid``."""
    total = 0.0
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces; fields resume after its closing parenthesis.
        rest = stat[stat.rfind(")") + 2 :].split()
        if int(rest[2]) == pgid:
            total += (int(rest[11]) + int(rest[12])) / _TICKS
    return total


def _own_cpu_s() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class CpuMeter:
    """Measures, between :meth:`start` and :meth:`stop`, the cores used by other processes."""

    def __init__(self, server_pgid: int | None) -> None:
        self._pgid = server_pgid
        self._start: tuple[float, float | None, float, float] | None = None

    def start(self) -> None:
        group = group_cpu_s(self._pgid) if self._pgid else 0.0
        self._start = (time.monotonic(), _machine_busy_s(), group, _own_cpu_s())

    def stop(self) -> float | None:
        """Cores used by processes outside the benchmark (None when unknown)."""
        if self._start is None:
            return None
        wall0, busy0, group0, own0 = self._start
        busy1 = _machine_busy_s()
        if busy0 is None or busy1 is None:
            return None
        group1 = group_cpu_s(self._pgid) if self._pgid else 0.0
        wall = time.monotonic() - wall0
        ours = (group1 - group0) + (_own_cpu_s() - own0)
        return max((busy1 - busy0) - ours, 0.0) / wall if wall > 0 else None
