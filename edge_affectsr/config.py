"""Configs are data (YAML/TOML) validated against pydantic schemas; errors name the key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from edge_affectsr.errors import UserError

T = TypeVar("T", bound=BaseModel)


class ConfigError(UserError, ValueError):
    """A config that cannot be used; the message names the file and every offending key."""


def read_mapping(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return data


def validate(data: dict, schema: type[T], source: str = "config") -> T:
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"  {key}: {msg}")
        raise ConfigError(f"{source}: invalid config\n" + "\n".join(problems)) from None


def load_config(path: Path, schema: type[T]) -> T:
    return validate(read_mapping(path), schema, str(path))
