"""Model files read once: the bytes that were hashed are the bytes that get deserialized.

Every runtime is built from an :class:`Artifact`, never from a path, so nothing can swap the
file between the sha256 check and the load (the file is opened exactly once). Formats whose
loading runs code from the file (pickle, TorchScript) can be made to require a pin.

A model directory (an MLflow model) is a :class:`DirectoryArtifact`: every regular file under
it, read once. Its sha256 is that of a manifest with one line per file, sorted by relative
POSIX path (as bytes), each line ``<sha256 of the file>  <path>\n``, the format
``sha256sum`` prints. The same pin is computed with coreutils::

    cd MODEL_DIR && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum \
        | sha256sum

A symbolic link or any other non-regular entry in a directory is refused: it could point
outside the artifact, so its contents would not be what was pinned.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from modelserve.errors import ChecksumMismatchError, ModelLoadError, PinRequiredError

_CHUNK = 1 << 20
MAX_DIRECTORY_FILES = 10_000
"""Most files a model directory may hold (a pin covers every one of them)."""


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


@dataclass(frozen=True, slots=True)
class DirectoryArtifact(Artifact):
    """A model directory's verified files by relative POSIX path; ``data`` is the manifest."""

    files: Mapping[str, bytes]

    def member(self, relative: str) -> Artifact:
        """One file of the directory as an artifact of its own (its bytes and their sha256)."""
        key = PurePosixPath(relative).as_posix()
        if PurePosixPath(key).is_absolute() or ".." in PurePosixPath(key).parts:
            raise ModelLoadError(f"{self.name} names a file outside itself: {relative}")
        try:
            data = self.files[key]
        except KeyError:
            raise ModelLoadError(f"{self.name} has no file {key}") from None
        return Artifact(self.path / key, data, hashlib.sha256(data).hexdigest())

    def materialize(self) -> tempfile.TemporaryDirectory[str]:
        """The verified bytes written to a new private (0700) temporary directory.

        For libraries that only load from a path: loading from the original directory would
        read files again after they were hashed, so a swap in between would go unnoticed. The
        directory is removed by ``cleanup()`` or when the returned object is collected.
        """
        copy = tempfile.TemporaryDirectory(prefix="modelserve-")
        root = Path(copy.name)
        for relative, data in self.files.items():
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return copy


def read_directory(
    path: Path, pinned: str | None, *, runs_code: bool, require_sha256: bool
) -> DirectoryArtifact:
    """Every file under ``path`` read once; refused when the manifest digest is not the pin."""
    if not path.is_dir():
        raise ModelLoadError(f"model directory not found: {path}")
    if runs_code and require_sha256 and pinned is None:
        raise PinRequiredError(path.name)
    files = dict(_walk(path))
    manifest = _manifest(files)
    digest = hashlib.sha256(manifest).hexdigest()
    if pinned is not None and digest != pinned.lower():
        raise ChecksumMismatchError(str(path), pinned, digest)
    return DirectoryArtifact(path, manifest, digest, files)


def directory_sha256(path: Path) -> str:
    """The pin of a model directory (see the module docstring for the manifest format)."""
    return hashlib.sha256(_manifest(dict(_walk(path)))).hexdigest()


def _manifest(files: Mapping[str, bytes]) -> bytes:
    lines = [
        f"{hashlib.sha256(files[relative]).hexdigest()}  {relative}\n"
        for relative in sorted(files, key=lambda name: name.encode())
    ]
    return "".join(lines).encode()


def _walk(root: Path) -> Iterator[tuple[str, bytes]]:
    count = 0
    for directory, subdirs, names in os.walk(root):
        here = Path(directory)
        for name in [*subdirs, *names]:
            entry = here / name
            mode = entry.lstat().st_mode
            relative = entry.relative_to(root).as_posix()
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise ModelLoadError(
                    f"{root.name}/{relative} is not a regular file (links are refused)"
                )
            count += 1
            if count > MAX_DIRECTORY_FILES:
                raise ModelLoadError(f"{root.name} holds more than {MAX_DIRECTORY_FILES} files")
            yield relative, entry.read_bytes()


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (for tools that write pins, like ``demo``)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
