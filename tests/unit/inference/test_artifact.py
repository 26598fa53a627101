"""Model directories are hashed and loaded from the same bytes; their pin is reproducible."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from modelserve.errors import ChecksumMismatchError, ModelLoadError, PinRequiredError
from modelserve.inference.artifact import DirectoryArtifact, directory_sha256
from modelserve.inference.artifact import read_directory as read_any_directory


def read_directory(path: Path, pinned: str | None) -> DirectoryArtifact:
    return read_any_directory(path, pinned, runs_code=True, require_sha256=False)


def model_dir(root: Path) -> Path:
    directory = root / "model"
    (directory / "nested").mkdir(parents=True)
    (directory / "MLmodel").write_text("flavors: {}\n")
    (directory / "model.pkl").write_bytes(b"\x80\x04payload")
    (directory / "nested" / "b file.txt").write_text("spaces in names\n")
    (directory / "Z.txt").write_text("upper case sorts first\n")
    return directory


def test_directory_sha256_equals_the_documented_coreutils_pipeline(tmp_path: Path) -> None:
    """The pin the README tells users to compute with find/sort/sha256sum is the one checked."""
    directory = model_dir(tmp_path)
    pipeline = (
        "find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum"
    )
    shell = subprocess.run(
        ["bash", "-c", pipeline], cwd=directory, capture_output=True, text=True, check=True
    )
    assert directory_sha256(directory) == shell.stdout.split()[0]


def test_read_directory_refuses_a_changed_file(tmp_path: Path) -> None:
    """Any edited file under the directory changes its digest, so the pin refuses it."""
    directory = model_dir(tmp_path)
    pin = directory_sha256(directory)
    (directory / "nested" / "b file.txt").write_text("edited\n")
    with pytest.raises(ChecksumMismatchError):
        read_directory(directory, pin)


def test_read_directory_refuses_symbolic_links(tmp_path: Path) -> None:
    """A link could point outside the pinned directory, so it is refused, not followed."""
    directory = model_dir(tmp_path)
    (tmp_path / "outside.pkl").write_bytes(b"elsewhere")
    (directory / "linked.pkl").symlink_to(tmp_path / "outside.pkl")
    with pytest.raises(ModelLoadError, match="not a regular file"):
        read_directory(directory, None)


def test_read_directory_holds_the_bytes_that_were_hashed(tmp_path: Path) -> None:
    """The loaded bytes come from the one read that was hashed, not from a later read."""
    directory = model_dir(tmp_path)
    artifact = read_directory(directory, directory_sha256(directory))
    (directory / "model.pkl").write_bytes(b"swapped after the check")
    assert artifact.member("model.pkl").data == b"\x80\x04payload"


def test_materialized_copy_is_private_and_complete(tmp_path: Path) -> None:
    """The copy for path-only libraries is a 0700 directory holding exactly the verified files."""
    artifact = read_directory(model_dir(tmp_path), None)
    copy = artifact.materialize()
    try:
        root = Path(copy.name)
        assert root.stat().st_mode & 0o777 == 0o700
        assert directory_sha256(root) == artifact.sha256
    finally:
        copy.cleanup()
    assert not Path(copy.name).exists()


def test_member_refuses_paths_outside_the_directory(tmp_path: Path) -> None:
    """An MLmodel naming ../something cannot make the loader read outside what was pinned."""
    artifact = read_directory(model_dir(tmp_path), None)
    with pytest.raises(ModelLoadError, match="outside itself"):
        artifact.member("../outside.pkl")


def test_require_sha256_refuses_an_unpinned_directory(tmp_path: Path) -> None:
    """MLflow flavours may be pickles, so require_sha256 demands a pin for a directory too."""
    with pytest.raises(PinRequiredError):
        read_any_directory(model_dir(tmp_path), None, runs_code=True, require_sha256=True)
