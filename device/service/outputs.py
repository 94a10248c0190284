"""What a run makes of each processed frame besides its events: the live web view's state, the
annotated video (``--save``) and the per-face CSV (``--report``).

Why one fan-out: the daemon calls :meth:`FrameOutputs.observe` once per frame and knows nothing of
the outputs. An output that fails (a full disk, a closed pipe) is logged once and switched off,
and the run goes on, as with the event sinks: the events are what the daemon is for.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import cv2
from pydantic import BaseModel, ConfigDict, Field

from edge_affectsr.device.capture.config import SourceConfig
from edge_affectsr.device.capture.frame import Frame
from edge_affectsr.device.inference.pipeline import FrameResult
from edge_affectsr.device.reporting.face_report import STDOUT, FaceReport, check_report_path
from edge_affectsr.device.reporting.live_state import LiveState, ShownFace
from edge_affectsr.device.reporting.stats import Stats
from edge_affectsr.device.reporting.video_out import DEFAULT_FPS, AnnotatedVideo, check_video_path
from edge_affectsr.device.reporting.web_view import Route, WebConfig, WebView
from edge_affectsr.errors import UserError

if TYPE_CHECKING:  # settings imports this module for OutputsConfig
    from edge_affectsr.device.service.settings import DeviceConfig

log = logging.getLogger(__name__)

FOLDER_FPS = 2.0  # a folder's photos in a video: one every half second, long enough to read the labels


class OutputsConfig(BaseModel):
    """The ``outputs:`` section of the device config: files a run writes besides its events."""

    model_config = ConfigDict(extra="forbid")
    video: Path | None = Field(
        None, description="annotated video (.mp4 or .avi): boxes, track ids, labels, the SR faces inset (run --save); null: none")
    video_fps: float | None = Field(
        None, gt=0, description="the video's frame rate; null: the input video's, 2 for a folder of images, else 25")
    report: Path | None = Field(
        None, description="per-face CSV, one row per upscaled face naming its source, file and frame; - for stdout "
                          "(run --report); null: none")


class FrameOutputs:
    """``observe(frame, result, source)`` per processed frame (frame loop); ``close()`` once at exit."""

    def __init__(self, live: LiveState | None = None, video: AnnotatedVideo | None = None,
                 report: FaceReport | None = None, web: WebConfig | None = None) -> None:
        self.live, self.video, self.report = live, video, report
        self.web = web or WebConfig()
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_config(cls, config: DeviceConfig, classes: Sequence[str]) -> FrameOutputs:
        """The outputs ``config`` asks for (files created now); the live state when the web view is on."""
        web, outputs = config.web, config.outputs
        live = (LiveState(bool(config.preview), web.faces, web.tracks, web.history)
                if config.http.enabled and web.enabled else None)
        video = (AnnotatedVideo(outputs.video, outputs.video_fps or input_fps(config.capture.source))
                 if outputs.video else None)
        try:
            report = FaceReport(outputs.report, classes) if outputs.report else None
        except BaseException:
            if video is not None:
                video.close()
            raise
        return cls(live, video, report, web)

    def web_routes(self, stats: Stats, info: Callable[[], Mapping[str, Any]]) -> dict[str, Route]:
        """The live view's routes for the HTTP API (none when it is off)."""
        if self.live is None:
            return {}
        return WebView(self.web, self.live, stats, info).routes()

    def observe(self, frame: Frame, result: FrameResult, source: str) -> None:
        """Hand one processed frame and its upscaled faces to every output still on."""
        faces = [ShownFace(f.event, f.aligned.lr, f.verdict.image) for f in result.faces]
        with self._lock:
            if self._closed or result.error is not None:
                return
            if self.live is not None:
                self.live.observe(frame.index, frame.image, faces, source, frame.file)
            self.video = _written("video", self.video, frame.image, faces)
            self.report = _written("report", self.report, [f.event for f in faces])

    def close(self) -> None:
        """End the live view's streams and finish the files (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self.live is not None:
            self.live.close()
        for name, output in (("video", self.video), ("report", self.report)):
            if output is not None:
                try:
                    output.close()
                except (OSError, cv2.error) as e:
                    log.error("finishing the %s output failed: %s", name, e)


def check_outputs(config: DeviceConfig) -> None:
    """A UserError before the bundle loads when an output path cannot be written, or two outputs
    would share stdout."""
    outputs = config.outputs
    if outputs.video is not None:
        check_video_path(outputs.video)
    if outputs.report is not None:
        check_report_path(outputs.report)
        if str(outputs.report) == STDOUT and config.jsonl.enabled and config.jsonl.path == STDOUT:
            raise UserError("the report and the JSON-lines events would both go to stdout: "
                            "give --report a file, or --events-jsonl a file or off")


def _written(name: str, output: AnnotatedVideo | FaceReport | None, *args) -> AnnotatedVideo | FaceReport | None:
    """``output.write(*args)``; the output, or None (logged once, closed) when it failed: it is off from then on."""
    if output is None:
        return None
    try:
        output.write(*args)
        return output
    except (OSError, cv2.error, UserError) as e:
        log.error("the %s output failed and is off for the rest of the run: %s", name, e)
        try:
            output.close()
        except (OSError, cv2.error):
            pass  # already reported the failure that matters
        return None


def input_fps(source: SourceConfig) -> float:
    """The frame rate the annotated video plays at: the input file's, the built-in clip's pace,
    :data:`FOLDER_FPS` for photos, else :data:`DEFAULT_FPS`."""
    if source.kind == "folder":
        return FOLDER_FPS
    if source.kind == "builtin":
        return source.fps or DEFAULT_FPS
    if source.kind == "video" and isinstance(source.uri, str) and Path(source.uri).is_file():
        cap = cv2.VideoCapture(source.uri)
        fps = cap.get(cv2.CAP_PROP_FPS)
        cap.release()
        if 0 < fps < 1000:
            return float(fps)
    return DEFAULT_FPS
