"""device/service/settings.py: the device config (sections, defaults, errors naming the key) and CLI overrides."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from edge_affectsr.config import ConfigError
from edge_affectsr.device.capture.config import CaptureConfig
from edge_affectsr.device.service.commands import Run, _overrides
from edge_affectsr.device.service.settings import (
    EXAMPLE_OVERRIDES, DeviceConfig, example_config_text, load_device_config, parse_http, parse_source,
)

from schema_docs import undescribed_keys

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "device.example.yaml"


def test_defaults_are_the_zero_configuration_run():
    cfg = load_device_config()
    assert cfg.bundle.path is None and cfg.capture.source.kind == "builtin" and not cfg.capture.newest_frame_wins
    assert cfg.detector.tiles is None and cfg.detector.min_face_px == 20 and cfg.roi.enabled  # zoom levels to 20 px faces
    assert cfg.http.host == "127.0.0.1" and cfg.jsonl.path == "-" and not cfg.crops.enabled and not cfg.mqtt.enabled


@pytest.mark.parametrize("suffix, text", [
    (".yaml", "detector:\n  tiles: [2, 2]\nguard:\n  fallback_to_bicubic: true\npipeline:\n  report: track\n"),
    (".toml", "[detector]\ntiles = [2, 2]\n[guard]\nfallback_to_bicubic = true\n[pipeline]\nreport = 'track'\n"),
])
def test_yaml_and_toml_files(tmp_path: Path, suffix: str, text: str):
    path = tmp_path / f"device{suffix}"
    path.write_text(text)
    cfg = load_device_config(path)
    assert cfg.detector.tiles == (2, 2) and cfg.guard.fallback_to_bicubic and cfg.pipeline.report == "track"


def test_errors_name_every_bad_key(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("detector:\n  tiles_per_cal: 2\nguard:\n  kl_max: -1\nwatchdg: {}\n")
    with pytest.raises(ConfigError) as info:
        load_device_config(path)
    text = str(info.value)
    assert str(path) in text
    assert "detector.tiles_per_cal: unknown key" in text and "guard.kl_max" in text and "watchdg: unknown key" in text


def test_flags_override_the_file_and_are_validated(tmp_path: Path):
    path = tmp_path / "device.yaml"
    path.write_text("store:\n  path: a.db\n  retention_days: 7\nhttp:\n  port: 9000\n")
    args = type("A", (), {"model": "b", "source": str(tmp_path), "max_frames": 5, "events_jsonl": "off",
                          "db": "x.db", "http": "[::1]:9100"})()
    cfg = load_device_config(path, _overrides(args))
    assert cfg.bundle.path == "b" and cfg.capture.source.kind == "folder" and cfg.run.max_frames == 5
    assert not cfg.jsonl.enabled and str(cfg.store.path) == "x.db" and cfg.store.retention_days == 7
    assert (cfg.http.host, cfg.http.port) == ("::1", 9100)
    with pytest.raises(ConfigError, match="run.max_frames"):
        load_device_config(None, {"run.max_frames": 0})


def test_sources(tmp_path: Path):
    video = tmp_path / "clip.avi"
    video.write_bytes(b"x")
    assert parse_source("builtin")["source"] == {"kind": "builtin"}
    assert parse_source("0") == {"source": {"kind": "video", "uri": "0"}, "newest_frame_wins": True}
    assert parse_source("rtsp://cam/stream")["newest_frame_wins"]
    assert parse_source("/dev/video2")["source"]["kind"] == "video"
    assert parse_source(str(video)) == {"source": {"kind": "video", "uri": str(video)}, "newest_frame_wins": False}
    assert parse_source(str(tmp_path))["source"]["kind"] == "folder"
    with pytest.raises(ConfigError, match="--source"):
        parse_source(str(tmp_path / "missing.mp4"))


def test_http_flag():
    assert parse_http("off") == {"enabled": False}
    assert parse_http("0.0.0.0:8081") == {"enabled": True, "host": "0.0.0.0", "port": 8081}
    for bad in ("8080", "host:", ":80"):
        with pytest.raises(ConfigError, match="--http"):
            parse_http(bad)


def test_the_example_config_is_valid():
    cfg = load_device_config(EXAMPLE)
    assert cfg.capture.newest_frame_wins and cfg.interpreter.delegate_order == ["edgetpu", "gpu", "cpu"]


def test_the_example_config_is_generated_from_the_schema():
    """deploy/device.example.yaml is exactly what `make device-example` writes, and means what it says."""
    assert EXAMPLE.read_text() == example_config_text(), "deploy/device.example.yaml is stale: run `make device-example`"
    assert load_device_config(EXAMPLE) == load_device_config(None, EXAMPLE_OVERRIDES)


def test_every_key_is_described():
    assert undescribed_keys(DeviceConfig) == []


def test_each_section_default_is_its_class_default():
    """One place per default: DeviceConfig adds nothing to its components' own defaults."""
    cfg = DeviceConfig()
    for name, field in DeviceConfig.model_fields.items():
        if name != "preview":  # the one top-level switch, not a section: its own test below
            assert getattr(cfg, name) == field.annotation(), name


def test_preview_left_out_is_on_for_the_builtin_clip_only():
    assert DeviceConfig().preview is True
    assert load_device_config(None, {"capture.source": {"kind": "folder", "path": "x"}}).preview is False
    assert load_device_config(None, {"capture.source": {"kind": "video", "uri": 0}}).preview is False
    assert load_device_config(None, {"capture.source": {"kind": "video", "uri": 0}, "preview": True}).preview is True
    assert load_device_config(None, {"preview": False}).preview is False


def test_newest_frame_wins_left_out_follows_the_source():
    assert CaptureConfig().newest_frame_wins is False  # the built-in clip: every frame
    assert CaptureConfig(source={"kind": "video", "uri": 0}).newest_frame_wins is True
    assert CaptureConfig(source={"kind": "folder", "path": "x"}).newest_frame_wins is True
    assert CaptureConfig(source={"kind": "video", "uri": 0}, newest_frame_wins=False).newest_frame_wins is False


def print_config(capsys, *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    Run().add_arguments(parser)
    code = Run().run(parser.parse_args(["--print-config", *argv]))
    return code, capsys.readouterr().out


def test_print_config_shows_defaults_file_and_flags_resolved(tmp_path: Path, capsys):
    path = tmp_path / "device.yaml"
    path.write_text("http:\n  port: 9000\ntracker:\n  max_missed: 9\n")
    code, out = print_config(capsys, "--config", str(path), "--source", str(tmp_path), "--http", "0.0.0.0:9100")
    assert code == 0
    assert "  # frames a track may go unmatched before it expires\n  max_missed: 9\n" in out
    cfg = load_device_config(path, {"capture.source": {"kind": "folder", "path": str(tmp_path)},
                                    "capture.newest_frame_wins": False, "http.host": "0.0.0.0", "http.port": 9100})
    assert DeviceConfig.model_validate(yaml.safe_load(out)) == cfg  # what it prints is what would run


def test_schema_forbids_unknown_sections():
    assert DeviceConfig.model_config["extra"] == "forbid"
