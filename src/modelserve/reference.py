"""The configuration reference (a Markdown table per section), rendered from the settings tree.

The README embeds its output between markers; a test keeps the two identical, so the
reference cannot drift from the code. Print it with ``modelserve config-reference``.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from modelserve.settings import Settings

BEGIN = "<!-- BEGIN CONFIG REFERENCE (generated: modelserve config-reference) -->"
END = "<!-- END CONFIG REFERENCE -->"


def embed_reference(markdown: Path) -> None:
    """Replace the text between the markers in ``markdown`` with the current reference."""
    text = markdown.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    markdown.write_text(f"{head}{BEGIN}\n{render_reference()}{END}{tail}")


def render_reference() -> str:
    """Markdown tables: one for the top level and one per nested section."""
    sections: list[tuple[str, str | None, type[BaseModel]]] = [("", "MODELSERVE_", Settings)]
    out: list[str] = []
    while sections:
        prefix, env, model = sections.pop(0)
        rows: list[str] = []
        for name, field in model.model_fields.items():
            key = f"{prefix}{name}"
            nested = _section_model(field.annotation)
            env_name = f"{env}{name.upper()}" if env else None
            if nested is not None and not _is_collection(field.annotation):
                sections.append((f"{key}.", f"{env_name}__" if env_name else None, nested))
                continue
            if nested is not None:
                item_key = f"{key}[]" if _origin_is(field.annotation, list) else f"{key}.<name>"
                sections.append((f"{item_key}.", None, nested))
            rows.append(_row(key, env_name, field))
        if rows:
            title = prefix.rstrip(".") or "top level"
            out += [
                f"#### `{title}`",
                "",
                "| key | env | type | default | meaning |",
                "|---|---|---|---|---|",
                *rows,
                "",
            ]
    return "\n".join(out).rstrip() + "\n"


def _row(key: str, env: str | None, field: FieldInfo) -> str:
    env_cell = f"`{env}`" if env else "(file or JSON env)"
    doc = (field.description or "").replace("|", "\\|").replace("\n", " ")
    return f"| `{key}` | {env_cell} | {_type_name(field.annotation)} | {_default(field)} | {doc} |"


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "(section)"
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    text = repr(value) if not isinstance(value, bool) else str(value).lower()
    return f"`{text}`".replace("|", "\\|")


def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("pathlib.", "")
    for model in ("modelserve.settings.", "pydantic.types."):
        text = text.replace(model, "")
    text = text.replace("<class '", "").replace("'>", "")
    return text.replace("|", "or")


def _section_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _section_model(argument)
        if found is not None:
            return found
    return None


def _is_collection(annotation: Any) -> bool:
    return _origin_is(annotation, list) or _origin_is(annotation, dict)


def _origin_is(annotation: Any, kind: type) -> bool:
    return typing.get_origin(annotation) is kind
