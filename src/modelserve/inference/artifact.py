"""Model files read once: the bytes that were hashed are the bytes that get deserialized.

Every runtime is built from an :class:`Artifact`, never from a path, so nothing can swap the
file between the sha256 check and the load (the file is opened exactly once). Formats whose
loading runs code from the file (pickle, TorchScript) can be made to require a pin.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from modelserve.errors import ChecksumMismatchError, ModelLoadError, PinRequiredError

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Artifact:
    """One file's content and the sha256 of exactly that content."""

    path: Path
    data: bytes
    sha256: str

    @property
    def name(self) -> str:
        """The file name, for messages (never the full path: it may reach a response)."""
        return self.path.name


def read_artifact(
    path: Path, pinned: str | None, *, runs_code: bool, require_sha256: bool
) -> Artifact:
    """Read ``path`` once, hash it and check the pin; refuse before anything is deserialized.

    ``runs_code`` says whether loading the format executes code from the file; with
    ``require_sha256`` such a file without a pin is refused without being read.
    """
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    if runs_code and require_sha256 and pinned is None:
        raise PinRequiredError(path.name)
    try:
        with path.open("rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise ModelLoadError(f"{path.name} is not a regular file")
            data = fh.read()
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path.name}: {exc.strerror}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if pinned is not None and digest != pinned.lower():
        raise ChecksumMismatchError(str(path), pinned, digest)
    return Artifact(path, data, digest)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (for tools that write pins, like ``demo``)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
