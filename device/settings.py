"""The device config: one validated document (TOML or YAML) with a section per component, and CLI overrides.

Why one schema built from the components' own sections: each module owns its settings
(``detector:`` is :class:`~device.detect.DetectorConfig`, ``store:`` is
:class:`~device.store.StoreConfig`, ...), so a key is documented and validated next to the code
that uses it, and ``extra='forbid'`` everywhere makes a typo an error that names the key
(``detector.tiles_per_cal: unknown key``) instead of a silently ignored setting. CLI flags are
applied to the raw mapping *before* validation, so a bad flag is reported the same way.

Defaults are the zero-configuration run: the shipped bundle, the built-in clip processed frame by
frame, events as JSON lines on stdout and in ``events.db``, HTTP on 127.0.0.1:8080.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from edge_affectsr.device.align import AlignConfig
from edge_affectsr.device.bundle_loader import BundleConfig
from edge_affectsr.device.capture import BuiltinSourceConfig, CaptureConfig
from edge_affectsr.device.crops import CropsConfig
from edge_affectsr.device.detect import DetectorConfig
from edge_affectsr.device.guard import GuardConfig
from edge_affectsr.device.http_api import HttpConfig
from edge_affectsr.device.interpreter import InterpreterConfig
from edge_affectsr.device.jsonl import JsonlConfig
from edge_affectsr.device.landmarks import LandmarkConfig
from edge_affectsr.device.mqtt import MqttConfig
from edge_affectsr.device.pipeline import PipelineConfig
from edge_affectsr.device.roi_detect import RoiConfig
from edge_affectsr.device.stats import StatsConfig
from edge_affectsr.device.store import StoreConfig
from edge_affectsr.device.track import TrackerConfig
from edge_affectsr.config import ConfigError, read_mapping, validate

LIVE_URI = re.compile(r"^(\d+|/dev/video\d+|[a-z][a-z0-9+.-]*://.+)$", re.IGNORECASE)


class WatchdogConfig(BaseModel):
    """The ``watchdog:`` section: what the daemon does when frames stop or inference hangs."""

    model_config = ConfigDict(extra="forbid")
    no_frames_s: float = Field(10.0, gt=0)  # no frame from the source this long -> reopen it
    stuck_s: float = Field(30.0, gt=0)  # one frame in processing this long -> exit non-zero (systemd restarts)
    exit_code: int = Field(70, ge=1, le=255)  # EX_SOFTWARE


class RunConfig(BaseModel):
    """The ``run:`` section: limits for one run."""

    model_config = ConfigDict(extra="forbid")
    max_frames: int | None = Field(None, ge=1)  # stop after this many processed frames


def _default_capture() -> CaptureConfig:
    return CaptureConfig(source=BuiltinSourceConfig(kind="builtin"), newest_frame_wins=False)


def _default_detector() -> DetectorConfig:
    # far faces: whole frame + a 3x2 tile grid, one tile per frame in rotation (tracked faces are
    # looked for around their last box every frame, see device/roi_detect.py)
    return DetectorConfig(tiles=(3, 2), tiles_per_call=1)


def _default_tracker() -> TrackerConfig:
    # small far faces move several box widths per second: IoU between frames drops fast
    return TrackerConfig(iou_threshold=0.1)


class DeviceConfig(BaseModel):
    """Everything ``edge-affectsr run`` reads."""

    model_config = ConfigDict(extra="forbid")
    bundle: BundleConfig = Field(default_factory=BundleConfig)
    interpreter: InterpreterConfig = Field(default_factory=InterpreterConfig)
    capture: CaptureConfig = Field(default_factory=_default_capture)
    detector: DetectorConfig = Field(default_factory=_default_detector)
    roi: RoiConfig = Field(default_factory=RoiConfig)
    landmarks: LandmarkConfig = Field(default_factory=LandmarkConfig)
    align: AlignConfig = Field(default_factory=AlignConfig)
    guard: GuardConfig = Field(default_factory=GuardConfig)
    tracker: TrackerConfig = Field(default_factory=_default_tracker)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    jsonl: JsonlConfig = Field(default_factory=JsonlConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    crops: CropsConfig = Field(default_factory=CropsConfig)
    stats: StatsConfig = Field(default_factory=StatsConfig)
    watchdog: WatchdogConfig = Field(default_factory=WatchdogConfig)
    run: RunConfig = Field(default_factory=RunConfig)


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


def set_key(data: dict, dotted: str, value: Any) -> None:
    """Set ``data['a']['b'] = value`` for ``dotted = 'a.b'``, creating sections; replaces a whole
    section when ``value`` is a mapping given for it."""
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[last] = value


def load_device_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> DeviceConfig:
    """The config file (or the defaults) with ``overrides`` (dotted keys) applied, validated; ConfigError names the key."""
    data = copy.deepcopy(read_mapping(path)) if path is not None else {}
    for key, value in (overrides or {}).items():
        set_key(data, key, value)
    return validate(data, DeviceConfig, str(path) if path is not None else "command line")
