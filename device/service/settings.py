"""The device config: one validated document (TOML or YAML) with a section per component, and CLI overrides.

Why one schema built from the components' own sections: each module owns its settings
(``detector:`` is :class:`~edge_affectsr.runtime.detect.DetectorConfig`, ``store:`` is
:class:`~edge_affectsr.device.reporting.store.StoreConfig`, ...), so a key is documented and validated next to the code
that uses it, and ``extra='forbid'`` everywhere makes a typo an error that names the key
(``detector.tiles_per_cal: unknown key``) instead of a silently ignored setting. CLI flags are
applied to the raw mapping *before* validation, so a bad flag is reported the same way.

Defaults are the zero-configuration run: the shipped bundle, the built-in clip processed frame by
frame, events as JSON lines on stdout and in ``events.db``, HTTP on 127.0.0.1:8080. Each default is
the component class's own (``DeviceConfig`` composes the classes as they are); every key carries a
description, from which ``deploy/device.example.yaml`` and ``run --print-config`` are written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge_affectsr.config import ConfigError, apply_overrides, read_mapping, validate
from edge_affectsr.config_doc import commented_yaml
from edge_affectsr.device.capture.config import CaptureConfig
from edge_affectsr.device.inference.budget import BudgetConfig
from edge_affectsr.device.inference.guard import GuardConfig
from edge_affectsr.device.inference.pipeline import PipelineConfig
from edge_affectsr.device.inference.smoothing import SmoothingConfig
from edge_affectsr.device.inference.summaries import SummariesConfig
from edge_affectsr.device.inference.track import TrackerConfig
from edge_affectsr.device.reporting.crops import CropsConfig
from edge_affectsr.device.reporting.http_api import HttpConfig
from edge_affectsr.device.reporting.jsonl import JsonlConfig
from edge_affectsr.device.reporting.mqtt import MqttConfig
from edge_affectsr.device.reporting.stats import StatsConfig
from edge_affectsr.device.reporting.store import StoreConfig
from edge_affectsr.device.reporting.web_view import WebConfig
from edge_affectsr.device.service.outputs import OutputsConfig
from edge_affectsr.runtime.align import AlignConfig
from edge_affectsr.runtime.bundle_models import BundleConfig
from edge_affectsr.runtime.detect import DetectorConfig
from edge_affectsr.runtime.interpreter import InterpreterConfig
from edge_affectsr.runtime.landmarks import LandmarkConfig
from edge_affectsr.runtime.roi_detect import RoiConfig
from edge_affectsr.signing import TrustConfig

LIVE_URI = re.compile(r"^(\d+|/dev/video\d+|[a-z][a-z0-9+.-]*://.+)$", re.IGNORECASE)


class WatchdogConfig(BaseModel):
    """The ``watchdog:`` section: what the daemon does when frames stop or inference hangs."""

    model_config = ConfigDict(extra="forbid")
    no_frames_s: float = Field(10.0, gt=0, description="no frame from the source this long: reopen it")
    stuck_s: float = Field(
        30.0, gt=0, description="one frame in processing this long: exit with exit_code (systemd restarts)")
    exit_code: int = Field(70, ge=1, le=255, description="70: EX_SOFTWARE")


class RunConfig(BaseModel):
    """The ``run:`` section: limits for one run."""

    model_config = ConfigDict(extra="forbid")
    max_frames: int | None = Field(
        None, ge=1, description="stop after this many processed frames; null: run until the source ends or a signal")


class DeviceConfig(BaseModel):
    """Everything ``edge-affectsr run`` reads."""

    model_config = ConfigDict(extra="forbid")
    bundle: BundleConfig = Field(default_factory=BundleConfig, description="the model bundle")
    trust: TrustConfig = Field(default_factory=TrustConfig, description="whose signed bundles are run")
    interpreter: InterpreterConfig = Field(
        default_factory=InterpreterConfig, description="how the models run: delegates, threads")
    capture: CaptureConfig = Field(default_factory=CaptureConfig, description="where frames come from")
    detector: DetectorConfig = Field(default_factory=DetectorConfig, description="BlazeFace face detection")
    roi: RoiConfig = Field(default_factory=RoiConfig, description="re-detection around tracked faces")
    landmarks: LandmarkConfig = Field(default_factory=LandmarkConfig, description="FaceMesh landmarks")
    align: AlignConfig = Field(default_factory=AlignConfig, description="face alignment and the LR crop")
    guard: GuardConfig = Field(default_factory=GuardConfig, description="the expression guard")
    tracker: TrackerConfig = Field(default_factory=TrackerConfig, description="one id per face across frames")
    pipeline: PipelineConfig = Field(
        default_factory=PipelineConfig, description="which faces are upscaled and reported")
    budget: BudgetConfig = Field(
        default_factory=BudgetConfig, description="how many faces one frame may upscale, and which go first")
    smoothing: SmoothingConfig = Field(
        default_factory=SmoothingConfig, description="per-track smoothing of the expression probabilities")
    summaries: SummariesConfig = Field(
        default_factory=SummariesConfig, description="an event per ended track and a group summary every N seconds")
    jsonl: JsonlConfig = Field(default_factory=JsonlConfig, description="events as JSON lines")
    store: StoreConfig = Field(default_factory=StoreConfig, description="events in SQLite")
    http: HttpConfig = Field(default_factory=HttpConfig, description="the HTTP API")
    web: WebConfig = Field(default_factory=WebConfig, description="the live view at / of the HTTP API")
    preview: bool | None = Field(
        None, description="show frames and face images in the live view (they are never stored by it); "
                          "null: on for the built-in clip, off for every other source")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="events over MQTT")
    crops: CropsConfig = Field(default_factory=CropsConfig, description="saved face crops")
    outputs: OutputsConfig = Field(
        default_factory=OutputsConfig, description="the annotated video and the per-face CSV a run writes")
    stats: StatsConfig = Field(default_factory=StatsConfig, description="latency and fps statistics")
    watchdog: WatchdogConfig = Field(
        default_factory=WatchdogConfig, description="what happens when frames stop or inference hangs")
    run: RunConfig = Field(default_factory=RunConfig, description="limits for one run")

    @model_validator(mode="after")
    def _resolve_preview(self) -> DeviceConfig:
        """Faces are personal data: images are shown by default only for the built-in (synthetic) clip."""
        if self.preview is None:
            self.preview = self.capture.source.kind == "builtin"
        return self


def parse_source(text: str) -> dict[str, Any]:
    """A ``--source`` value as a ``capture`` mapping: ``builtin``, ``picamera``, a camera index,
    ``/dev/videoN`` or URL (live: newest frame wins), a folder of images or a video file (every frame)."""
    text = text.strip()
    if text == "builtin":
        return {"source": {"kind": "builtin"}, "newest_frame_wins": False}
    if text == "picamera":
        return {"source": {"kind": "picamera"}, "newest_frame_wins": True}
    if LIVE_URI.match(text):
        return {"source": {"kind": "video", "uri": text}, "newest_frame_wins": True}
    path = Path(text).expanduser()
    if path.is_dir():
        return {"source": {"kind": "folder", "path": str(path)}, "newest_frame_wins": False}
    if path.is_file():
        return {"source": {"kind": "video", "uri": str(path)}, "newest_frame_wins": False}
    raise ConfigError(f"--source {text!r}: not builtin, picamera, a camera index, /dev/videoN, a URL, "
                      "an image folder or a video file that exists")


def parse_http(text: str) -> dict[str, Any]:
    """``--http HOST:PORT`` (``[::1]:8080`` for IPv6) or ``off``, as an ``http`` mapping."""
    if text.strip().lower() == "off":
        return {"enabled": False}
    match = re.fullmatch(r"\[?([^\]]*?)\]?:(\d+)", text.strip())
    if not match or not match.group(1):
        raise ConfigError(f"--http {text!r}: expected HOST:PORT (e.g. 127.0.0.1:8080) or off")
    return {"enabled": True, "host": match.group(1), "port": int(match.group(2))}


def load_device_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> DeviceConfig:
    """The config file (or the defaults) with ``overrides`` (dotted keys) applied, validated; ConfigError names the key."""
    data = apply_overrides(read_mapping(path) if path is not None else {}, overrides or {})
    return validate(data, DeviceConfig, str(path) if path is not None else "command line")


# deploy/device.example.yaml: the defaults plus what a deployment changes (a live camera, the paths
# of deploy/INSTALL.md); `make device-example` rewrites the file from this and the schema.
EXAMPLE_OVERRIDES: dict[str, Any] = {
    "bundle.path": "/opt/edge-affectsr/current",
    "capture.source": {"kind": "video", "uri": 0, "width": 640, "height": 480},
    "store.path": "/var/lib/edge-affectsr/events.db",
    "crops.folder": "/var/lib/edge-affectsr/crops",
    "mqtt.topic_prefix": "edge-affectsr/camera-1",
}
EXAMPLE_HEADER = """\
Device config for `edge-affectsr run --config FILE` (YAML; TOML works too): every key, with its
default unless a deployment changes it. Every key is optional; an unknown or invalid key is an error
that names it. Command-line flags override this file.
Generated from the schema by `make device-example`; `edge-affectsr run --print-config` shows the
config a run would use."""


def render_device_config(cfg: DeviceConfig, header: str = "") -> str:
    """``cfg`` as YAML with every key's description above it (loads back into DeviceConfig)."""
    return commented_yaml(cfg, header)


def example_config_text() -> str:
    """The text of deploy/device.example.yaml."""
    return render_device_config(load_device_config(None, EXAMPLE_OVERRIDES), EXAMPLE_HEADER)
