"""Other model servers, each installed on demand in its own venv under ``benchmarks/.venvs/``.

Installation and start-up can fail here (no wheel, an incompatible pin): the harness then
records the peer as skipped with the reason, and never reports a number it did not measure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

VENVS_DIR = Path(__file__).resolve().parents[1] / ".venvs"
PIP_TIMEOUT_S = 1200


class PeerUnavailableError(RuntimeError):
    """A peer could not be installed or started; the message says why."""


@dataclass(frozen=True)
class PeerVenv:
    """A peer's virtual environment."""

    name: str
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def bin(self, script: str) -> Path:
        return self.root / "bin" / script


def ensure_venv(name: str, requirements: list[str]) -> PeerVenv:
    """Create ``.venvs/<name>`` with ``python3 -m venv`` and pip-install ``requirements``.

    A marker file records what was installed, so a second run reuses the venv unless the
    requirements changed.
    """
    venv = PeerVenv(name=name, root=VENVS_DIR / name)
    marker = venv.root / ".bench-requirements"
    wanted = "\n".join(requirements) + "\n"
    if venv.python.exists() and marker.exists() and marker.read_text() == wanted:
        return venv
    print(f"installing peer {name} into {venv.root}: {' '.join(requirements)}")
    VENVS_DIR.mkdir(parents=True, exist_ok=True)
    python3 = "python3" if sys.platform != "win32" else sys.executable
    _run([python3, "-m", "venv", "--clear", str(venv.root)], f"create the {name} venv")
    pip = [str(venv.python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, "--upgrade", "pip"], f"upgrade pip in the {name} venv")
    _run([*pip, *requirements], f"install {' '.join(requirements)}")
    marker.write_text(wanted)
    return venv


def _run(argv: list[str], what: str) -> None:
    env = {**os.environ, "PIP_NO_INPUT": "1"}
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        raise PeerUnavailableError(f"could not {what}: timed out after {PIP_TIMEOUT_S} s") from None
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip())[-800:]
        raise PeerUnavailableError(f"could not {what} (exit {done.returncode}): {tail}")
