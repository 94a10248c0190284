"""The device config against hostile but fair input: an empty file is the defaults (every key is
optional), a frame rate that is not positive is refused naming the key, and (hypothesis) any file
content or any mapping over the schema's own keys gives a DeviceConfig or a ConfigError, never
another exception."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from edge_affectsr.config import ConfigError
from edge_affectsr.device.service.settings import DeviceConfig, load_device_config

CLI = [sys.executable, "-m", "edge_affectsr.cli"]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("name, text", [("empty.yaml", ""), ("comments.yaml", "# nothing set yet\n\n"),
                                        ("empty.toml", ""), ("null.yaml", "~\n")])
def test_an_empty_config_file_is_the_defaults(tmp_path: Path, name: str, text: str):
    """Before: "expected a mapping of keys at the top level", although every key is optional."""
    (tmp_path / name).write_text(text)
    assert load_device_config(tmp_path / name) == DeviceConfig()
    done = subprocess.run([*CLI, "run", "--config", str(tmp_path / name), "--print-config"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "trust:" in done.stdout, done.stderr


@pytest.mark.parametrize("source", ["{kind: builtin, fps: %s}", "{kind: video, uri: 0, fps: %s}"])
@pytest.mark.parametrize("fps", ["-5", "0", ".nan"])
def test_a_frame_rate_that_is_not_positive_is_refused(tmp_path: Path, source: str, fps: str):
    (tmp_path / "d.yaml").write_text(f"capture:\n  source: {source % fps}\n")
    with pytest.raises(ConfigError, match=r"capture\.source\.\w+\.fps: Input should be greater than 0"):
        load_device_config(tmp_path / "d.yaml")


@pytest.mark.parametrize("data", [b"\xff\xfe\x00bundle: x", b"[" * 10_000, b"a: 2001-13-01", b"- 1\n- 2\n",
                                  b"capture: {source: &a [*a]}", b"bundle = 3\n[bundle"])
def test_unreadable_configs_are_config_errors(tmp_path: Path, data: bytes):
    for name in ("d.yaml", "d.toml"):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ConfigError):
            load_device_config(tmp_path / name)


@SETTINGS
@given(text=st.text(max_size=200))
def test_any_yaml_text_is_a_config_or_a_config_error(tmp_path: Path, text: str):
    (tmp_path / "d.yaml").write_text(text)
    try:
        load_device_config(tmp_path / "d.yaml")
    except ConfigError as e:
        assert str(e).startswith(str(tmp_path / "d.yaml"))


def _schema_keys(model: type[BaseModel]) -> list[str]:
    """Every dotted key of the schema (``capture.source``, ``http.port``, ...)."""
    out = []
    for name, field in model.model_fields.items():
        out.append(name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            out += [f"{name}.{sub}" for sub in _schema_keys(field.annotation)]
    return out


SCALARS = (st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats() | st.text(max_size=10)
           | st.sampled_from(["builtin", "video", "folder", "picamera", "cpu", "0", "-5", "127.0.0.1:8080"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(["kind", "uri", "fps", "path", "keys", "x"]), inner, max_size=3),
                      max_leaves=8)


@SETTINGS
@given(entries=st.lists(st.tuples(st.sampled_from(_schema_keys(DeviceConfig)), VALUES), max_size=6))
def test_any_values_for_the_schemas_keys_are_a_config_or_a_config_error(tmp_path: Path, entries):
    doc: dict = {}
    for key, value in entries:
        *parents, leaf = key.split(".")
        node = doc
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
        node[leaf] = value
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(doc))
    try:
        config = load_device_config(tmp_path / "d.yaml")
    except ConfigError:
        return
    assert isinstance(config, DeviceConfig)
