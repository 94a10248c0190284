"""A validated config written back as YAML, each key under its ``Field(description=...)`` as a comment.

Why from the schema: the example config shipped with the project and what ``--print-config`` shows
are generated from the same classes that validate a config, so a key, its default and its meaning
cannot drift apart from the code (a test compares the committed example with this output). The text
loads back into the same schema (values are written as YAML flow scalars and lists; secrets come
out masked).
"""

from __future__ import annotations

import textwrap
from typing import Any

import yaml
from pydantic import BaseModel

WIDTH = 100  # comment lines are wrapped to this many characters


def commented_yaml(config: BaseModel, header: str = "") -> str:
    """``config`` as YAML: ``header`` as leading comment lines, then every field (defaults
    included) with its description above it; nested models become indented sections, and a blank
    line separates the top-level sections."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    _write_section(config, 0, lines)
    return "\n".join(lines) + "\n"


def _write_section(model: BaseModel, depth: int, out: list[str]) -> None:
    pad = "  " * depth
    values = model.model_dump(mode="json")  # JSON-able: paths as text, tuples as lists, secrets masked
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if depth == 0 and isinstance(value, BaseModel) and out:
            out.append("")
        if field.description:
            out.extend(f"{pad}# {line}" for line in textwrap.wrap(field.description, WIDTH - len(pad) - 2))
        if isinstance(value, BaseModel):
            out.append(f"{pad}{name}:")
            _write_section(value, depth + 1, out)
        else:
            out.append(f"{pad}{name}: {_flow(values[name])}")


def _flow(value: Any) -> str:
    """One value as a single line of YAML (``null``, ``'-'``, ``[3, 2]``, ``{}``)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=float("inf"), sort_keys=False)
    return text.removesuffix("\n...\n").strip()
