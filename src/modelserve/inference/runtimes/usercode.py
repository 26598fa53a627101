"""Import a configured ``package.module:ClassName`` afresh, from the bytes that were verified.

Loading user code is like loading a pickle: it runs whatever the file says, so only a model
config names it (no request or admin call can), and with ``require_sha256`` the module's
source file must match its pin. The source is read once, hashed, checked, and those very bytes
are compiled and executed as a new module object: every load (a hot reload too) runs the file
as it is now, never a cached copy, and nothing can swap the file between check and execution.

Where the module is found: installed packages and the standard library first, then the
model's ``code_dir`` (by default the config file's folder). The folder is appended to the end
of ``sys.path`` only while the module is imported, so it can import modules beside it at its
top but never shadows an installed or standard-library module, and later imports in the process
do not see it. Only the named module is re-executed on a reload; modules it imports are
imported once per process, as Python does.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from modelserve.errors import ModelLoadError
from modelserve.inference.artifact import read_artifact
from modelserve.settings import CLASS_PATH

_IMPORT_LOCK = threading.Lock()
"""``sys.path`` and ``sys.modules`` are process-wide: one user-code import at a time."""


@dataclass(frozen=True, slots=True)
class ImportedClass:
    """The class a model config names, and the sha256 of the source it was executed from."""

    cls: type
    sha256: str
    source_name: str


def import_class(
    class_path: str, code_dir: Path | None, pinned: str | None, *, require_sha256: bool
) -> ImportedClass:
    """Execute the module of ``class_path`` afresh and return the class it defines."""
    if not CLASS_PATH.match(class_path):
        raise ModelLoadError(f"{class_path!r} is not of the form package.module:ClassName")
    module_name, class_name = class_path.split(":")
    with _IMPORT_LOCK, _on_path_end(code_dir):
        spec = _find_spec(module_name)
        if spec is None or spec.origin is None:
            where = f" or in {code_dir}" if code_dir is not None else ""
            raise ModelLoadError(f"no module {module_name} among installed packages{where}")
        if not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            raise ModelLoadError(
                f"{module_name} is not a Python source file (.py); modelserve executes and pins "
                "only source"
            )
        source = read_artifact(
            Path(spec.origin), pinned, runs_code=True, require_sha256=require_sha256
        )
        module = _execute(module_name, spec, source.data)
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise ModelLoadError(f"{source.name} defines no class {class_name}")
    return ImportedClass(cls, source.sha256, source.name)


@contextlib.contextmanager
def _on_path_end(code_dir: Path | None) -> Iterator[None]:
    entry = str(code_dir) if code_dir is not None else None
    added = entry is not None and entry not in sys.path
    if added and entry is not None:
        sys.path.append(entry)
    try:
        yield
    finally:
        if added and entry is not None:
            sys.path.remove(entry)


def _find_spec(module_name: str) -> importlib.machinery.ModuleSpec | None:
    """The module's spec as a fresh import would find it (``sys.modules`` is not consulted)."""
    parent_name, _, _ = module_name.rpartition(".")
    search: list[str] | None = None
    if parent_name:
        try:
            parent = importlib.import_module(parent_name)
        except ImportError as exc:
            raise ModelLoadError(f"cannot import package {parent_name}: {exc}") from exc
        search = list(getattr(parent, "__path__", []))
        if not search:
            raise ModelLoadError(f"{parent_name} is a module, not a package")
    importlib.invalidate_caches()  # a file written since the last import must be seen
    for finder in sys.meta_path:
        spec = finder.find_spec(module_name, search) if hasattr(finder, "find_spec") else None
        if spec is not None:
            return spec
    return None


def _execute(module_name: str, spec: importlib.machinery.ModuleSpec, data: bytes) -> ModuleType:
    """A new module object running ``data`` (registered, since dataclasses and pickle need it)."""
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(module_name)
    sys.modules[module_name] = module
    try:
        # Configured user code, checked against its pin (see the module docstring).
        exec(compile(data, spec.origin or module_name, "exec"), module.__dict__)  # noqa: S102
    except BaseException as exc:
        if previous is None:
            sys.modules.pop(module_name, None)
        else:
            sys.modules[module_name] = previous
        if isinstance(exc, Exception):
            raise ModelLoadError(
                f"importing {module_name} failed: {type(exc).__name__}: {exc}"
            ) from exc
        raise
    return module
