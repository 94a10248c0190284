"""The ``capture:`` section of the device config: which source, and how a failing camera is re-opened."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge_affectsr.device.capture.limits import FrameLimits


class ReconnectConfig(BaseModel):
    """How a failing camera is re-opened: wait ``initial_s``, then x ``factor`` up to ``max_s``."""

    model_config = ConfigDict(extra="forbid")
    initial_s: float = Field(0.5, gt=0, description="first wait before re-opening")
    factor: float = Field(2.0, ge=1.0, description="each further wait is this times longer")
    max_s: float = Field(30.0, gt=0, description="longest wait")
    max_attempts: int | None = Field(None, ge=0, description="attempts per outage; null: keep trying until stopped")
    timeout_s: float = Field(5.0, gt=0, description="open/read timeout for network streams")


class FolderSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["folder"] = Field(description="a folder of images, in name order")
    path: Path = Field(description="the folder")
    loop: bool = Field(False, description="start again after the last image")


class VideoSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["video"] = Field(description="a camera or video through OpenCV")
    uri: int | str = Field(description="camera index, /dev/videoN, file path, rtsp:// or http:// URL")
    loop: bool = Field(False, description="start a file again at its end")
    width: int | None = Field(None, description="requested frame width; null: the camera's")
    height: int | None = Field(None, description="requested frame height; null: the camera's")
    fps: float | None = Field(None, gt=0, description="requested frame rate; null: the camera's")
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig, description="how a failing camera is re-opened")


class PiCameraSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["picamera"] = Field(description="the Raspberry Pi camera (picamera2)")
    size: tuple[int, int] = Field((640, 480), description="processed (lores) frame size; width a multiple of 64")
    main_size: tuple[int, int] = Field((1280, 960), description="the sensor's main stream size")


class BuiltinSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["builtin"] = Field(
        "builtin", description="the built-in clip: one synthetic face moving over a 640x480 background")
    frames: int = Field(60, ge=1, description="frames in the clip")
    fps: float | None = Field(None, gt=0, description="pace like a live camera; null: as fast as consumed")
    loop: bool = Field(False, description="start again after the last frame")


SourceConfig = Annotated[
    Union[FolderSourceConfig, VideoSourceConfig, PiCameraSourceConfig, BuiltinSourceConfig],
    Field(discriminator="kind"),
]


class CaptureConfig(BaseModel):
    """The ``capture:`` section of the device config. The default is the zero-configuration run:
    the built-in clip, processed frame by frame. ``newest_frame_wins`` left out (None) is resolved
    here, so it is a bool after validation: live cameras must not fall behind, the built-in clip is
    processed whole (``--source`` sets it from the kind: files and folders process every frame)."""

    model_config = ConfigDict(extra="forbid")
    source: SourceConfig = Field(
        default_factory=BuiltinSourceConfig, description="the frame source; kind: builtin, video, picamera or folder")
    newest_frame_wins: bool | None = Field(
        None, description="drop frames rather than fall behind a live camera; null: true unless the source is builtin")
    limits: FrameLimits = Field(
        default_factory=FrameLimits, description="the largest image or video frame decoded; larger ones are skipped")
    camera: str | None = Field(
        None, min_length=1, max_length=64,
        description="this camera's name: the camera label in /metrics, the Home Assistant device; null: the host name")

    def camera_name(self) -> str:
        """``camera``, or this machine's host name."""
        return self.camera or socket.gethostname()

    @model_validator(mode="after")
    def _resolve_auto(self) -> CaptureConfig:
        if self.newest_frame_wins is None:
            self.newest_frame_wins = self.source.kind != "builtin"
        return self
