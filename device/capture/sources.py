"""The frame sources, and :func:`open_source` that builds the one a config section describes.

Sources: a folder of images, anything OpenCV's VideoCapture opens (camera index, ``/dev/videoN``,
a file, an rtsp/http URL), the Raspberry Pi camera (picamera2, imported only when chosen), and
the built-in synthetic sequence (``capture/builtin.py``); all yield ``Frame`` (``capture/frame.py``).

A camera that stops delivering is re-opened with exponential backoff, one log line per attempt,
rather than ending the daemon; a folder with a corrupt image skips it and counts it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from edge_affectsr.device.capture.builtin import BuiltinSequence
from edge_affectsr.device.capture.config import ReconnectConfig, SourceConfig
from edge_affectsr.device.capture.frame import CaptureError, Frame, FrameSource

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


# --- a folder of images ---------------------------------------------------------------------------


class FolderSource(FrameSource):
    """Images of a folder in sorted name order; unreadable files are logged, counted, skipped."""

    def __init__(self, folder: str | Path, loop: bool = False) -> None:
        super().__init__()
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise CaptureError(f"image folder not found: {self.folder}")
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.files:
            log.warning("%s: no images (%s)", self.folder, ", ".join(IMAGE_SUFFIXES))
        self.loop = loop
        self.name = str(self.folder)
        self.read = 0
        self.skipped = 0

    def frames(self) -> Iterator[Frame]:
        index = 0
        while not self.stopping:
            for path in self.files:
                if self.stopping:
                    return
                image = _read_image(path)
                if image is None:
                    self.skipped += 1
                    log.warning("skipping unreadable image %s (%d skipped so far)", path.name, self.skipped)
                    continue
                self.read += 1
                yield Frame(index, time.monotonic(), image)
                index += 1
            if not self.loop or self.read == 0:
                return


def _read_image(path: Path) -> np.ndarray | None:
    """BGR uint8, or None for a missing, empty or corrupt file (never raises)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
        return cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except (OSError, cv2.error):
        return None


# --- OpenCV VideoCapture ----------------------------------------------------------------------------

def backoff_delays(cfg: ReconnectConfig) -> Iterator[float]:
    """The waits before reconnect attempts 1, 2, ...: initial, x factor, capped at max."""
    delay = cfg.initial_s
    attempt = 0
    while cfg.max_attempts is None or attempt < cfg.max_attempts:
        yield min(delay, cfg.max_s)
        delay *= cfg.factor
        attempt += 1


def _is_url(uri: str) -> bool:
    return "://" in uri


class VideoSource(FrameSource):
    """A camera index, ``/dev/videoN``, a video file or a network stream, through OpenCV.

    A live source (camera or URL) that fails to open or to deliver is re-opened with exponential
    backoff, logged per attempt; a backoff that runs out of attempts ends the iteration with
    ``stop_reason`` saying so. A file ends at its last frame (or loops); a file that cannot be
    opened is retried the same way (it may be on a mount that comes back).
    """

    def __init__(self, uri: int | str, reconnect: ReconnectConfig | None = None, loop: bool = False,
                 width: int | None = None, height: int | None = None, fps: float | None = None) -> None:
        super().__init__()
        self.uri = int(uri) if isinstance(uri, str) and uri.isdigit() else uri
        self.reconnect = reconnect or ReconnectConfig()
        self.loop = loop
        self.request = {cv2.CAP_PROP_FRAME_WIDTH: width, cv2.CAP_PROP_FRAME_HEIGHT: height, cv2.CAP_PROP_FPS: fps}
        self.is_file = isinstance(self.uri, str) and not _is_url(self.uri) and not self.uri.startswith("/dev/")
        self.name = f"camera {self.uri}" if isinstance(self.uri, int) else str(self.uri)
        self.read = 0
        self.reconnects = 0
        self._cap: cv2.VideoCapture | None = None
        self._since_open = 0

    def frames(self) -> Iterator[Frame]:
        index = 0
        while not self.stopping:
            if self._cap is None and not self._connect():
                return
            ok, image = self._cap.read()
            if ok and image is not None:
                self.read += 1
                yield Frame(index, time.monotonic(), image)
                index += 1
                self._since_open += 1
                continue
            if self.is_file and self._since_open > 0:  # a file that delivered frames has ended
                if not self.loop:
                    self.stop_reason = "end of file"
                    return
                log.info("%s: end of file, looping", self.name)
            else:
                log.warning("%s: read failed, reconnecting", self.name)
            self._release()

    def _connect(self) -> bool:
        """Open the source, retrying with backoff; False when attempts run out or stop() was called."""
        if self._open():
            return True
        for attempt, delay in enumerate(backoff_delays(self.reconnect), start=1):
            limit = self.reconnect.max_attempts or "unlimited"
            log.warning("%s: cannot open; reconnect attempt %d/%s in %.2f s", self.name, attempt, limit, delay)
            if self._stop.wait(delay):
                return False
            self.reconnects += 1
            if self._open():
                log.info("%s: reconnected after %d attempts", self.name, attempt)
                return True
        self.stop_reason = f"gave up after {self.reconnect.max_attempts} reconnect attempts"
        log.error("%s: %s", self.name, self.stop_reason)
        return False

    def _open(self) -> bool:
        if self.is_file and not Path(self.uri).is_file():
            return False
        if isinstance(self.uri, str) and _is_url(self.uri):
            ms = int(self.reconnect.timeout_s * 1000)
            cap = cv2.VideoCapture(self.uri, cv2.CAP_FFMPEG,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        else:
            cap = cv2.VideoCapture(self.uri)
        if not cap.isOpened():
            cap.release()
            return False
        if not self.is_file:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # live: keep the driver's queue short (latency)
            for prop, value in self.request.items():
                if value:
                    cap.set(prop, value)
        self._cap, self._since_open = cap, 0
        return True

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def close(self) -> None:
        self._release()


# --- Raspberry Pi camera ----------------------------------------------------------------------------


class PiCameraSource(FrameSource):
    """The Pi camera through picamera2 (Raspberry Pi OS only), imported when this source is built.

    Frames come from the ISP's low-resolution stream (``lores``, YUV420, converted to BGR): the
    detector needs no more than 640x480, and the ISP scales for free. Not exercised by the tests
    (no Pi here) beyond the error raised where picamera2 is missing.
    """

    def __init__(self, size: tuple[int, int] = (640, 480), main_size: tuple[int, int] = (1280, 960)) -> None:
        super().__init__()
        try:
            from picamera2 import Picamera2  # noqa: PLC0415 - only on a Pi
        except ImportError as e:
            raise CaptureError(f"picamera2 is not available ({e}): it exists only on Raspberry Pi OS; "
                               "apt install python3-picamera2 and create the venv with --system-site-packages") from None
        if size[0] % 64:
            raise CaptureError(f"picamera lores width {size[0]} must be a multiple of 64 (row stride); try 640 or 320")
        self.size = size
        self.name = "picamera"
        self._cam = Picamera2()
        config = self._cam.create_video_configuration(main={"size": main_size, "format": "RGB888"},
                                                      lores={"size": size, "format": "YUV420"})
        self._cam.configure(config)
        self.read = 0

    def frames(self) -> Iterator[Frame]:
        self._cam.start()
        index = 0
        while not self.stopping:
            yuv = self._cam.capture_array("lores")
            image = cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)
            self.read += 1
            yield Frame(index, time.monotonic(), image)
            index += 1

    def close(self) -> None:
        try:
            self._cam.stop()
        except Exception:  # noqa: BLE001 - best effort on shutdown; the camera may never have started
            pass


# --- from the config -----------------------------------------------------------------------------------


def open_source(cfg: SourceConfig) -> FrameSource:
    """The frame source a config section describes."""
    if cfg.kind == "folder":
        return FolderSource(cfg.path, cfg.loop)
    if cfg.kind == "video":
        return VideoSource(cfg.uri, cfg.reconnect, cfg.loop, cfg.width, cfg.height, cfg.fps)
    if cfg.kind == "picamera":
        return PiCameraSource(cfg.size, cfg.main_size)
    return BuiltinSequence(cfg.frames, fps=cfg.fps, loop=cfg.loop)
