"""Which keys of a config schema lack a ``Field(description=...)`` (the text of --print-config and of
the example config comes from these descriptions)."""

from __future__ import annotations

import typing

from pydantic import BaseModel


def undescribed_keys(schema: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted keys of ``schema`` and of every model nested in it (union members too) with no description."""
    missing = []
    for name, field in schema.model_fields.items():
        key = f"{prefix}{name}"
        if not field.description:
            missing.append(key)
        for model in _models_in(field.annotation):
            missing += undescribed_keys(model, f"{key}.")
    return missing


def _models_in(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
