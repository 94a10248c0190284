"""Configs are data (YAML/TOML) validated against pydantic schemas; errors name the key."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from edge_affectsr.errors import UserError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (Jetson): tomli is the same parser, backported
    import tomli as tomllib

T = TypeVar("T", bound=BaseModel)


class ConfigError(UserError, ValueError):
    """A config that cannot be used; the message names the file and every offending key."""


def read_mapping(path: Path) -> dict:
    """The file's top-level mapping; an empty file (or one of comments only) is ``{}``: every key keeps
    its default. ConfigError for anything that is not a readable YAML/TOML mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot be read as text ({e})") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as e:  # ValueError: TOMLDecodeError, a YAML date 2001-13-01
        raise ConfigError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {e}") from None
    if data is None:
        data = {}
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


def parse_set(items: list[str]) -> dict[str, Any]:
    """``--set`` items (``["train.lr=2e-4", "loss.feature=0.1"]``) as dotted keys -> values. Each value
    is parsed as YAML (``true``, ``[1, 2]``; note ``2e-4`` stays a string there) and the schema then
    validates and converts it, so a wrong type or an unknown key is named like one in the file."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. train.lr=2e-4 or detector.score_threshold=0.6")
        try:
            out[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: value is not valid YAML: {e}") from None
    return out


def apply_overrides(data: dict, overrides: Mapping[str, Any]) -> dict:
    """A copy of ``data`` with each dotted key (``"train.lr"``) set to its value, applied to the raw
    mapping *before* validation so a bad override is reported like a bad key in the file. Missing
    (or empty) sections are created; a mapping value replaces its whole section (``capture.source``
    from a flag is not merged with the file's). Keys address mappings only (no list indices): a key
    through a scalar is a ConfigError. Used by training's ``--set`` and the device's CLI flags."""
    data = copy.deepcopy(data)
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = data
        for depth, part in enumerate(parents):
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"cannot set {key}: {'.'.join(parents[:depth + 1])!r} is not a section")
        node[leaf] = value
    return data


def load_config(path: Path, schema: type[T], overrides: list[str] | None = None) -> T:
    """The config at ``path`` with ``overrides`` (``KEY=VALUE``, dotted keys) applied, validated."""
    source = f"{path} with --set {' '.join(overrides)}" if overrides else str(path)
    return validate(apply_overrides(read_mapping(path), parse_set(overrides or [])), schema, source)
