"""Frame sources behind one interface: iterate -> ``Frame(index, timestamp, image)``, image BGR uint8.

Sources: a folder of images, anything OpenCV's VideoCapture opens (camera index, ``/dev/videoN``,
a file, an rtsp/http URL), the Raspberry Pi camera (picamera2, imported only when chosen), and
the built-in synthetic sequence (``device/builtin.py``). ``timestamp`` is ``time.monotonic()``
when the frame was acquired, the same clock for every source, so latency can be measured.

A camera that stops delivering is re-opened with exponential backoff, one log line per attempt,
rather than ending the daemon; a folder with a corrupt image skips it and counts it. ``stop()``
may be called from any thread and ends the iteration promptly (backoff waits are interruptible).
:class:`NewestFrame` decouples capture from processing: the consumer always gets the latest
frame and the ones it was too slow for are counted as dropped, so latency never builds up.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Annotated, Iterator, Literal, NamedTuple, Union

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge_affectsr.errors import UserError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class CaptureError(UserError):
    """A source that cannot be used as configured; the message says what to change."""


class Frame(NamedTuple):
    index: int
    timestamp: float
    image: np.ndarray  # H x W x 3 uint8, BGR


class FrameSource(ABC):
    """Iterate for frames; ``stop()`` from any thread; ``close()`` (or ``with``) releases it."""

    name = "source"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.stop_reason: str | None = None

    @abstractmethod
    def frames(self) -> Iterator[Frame]:
        """The frames, until the source ends or ``stop()`` is called."""

    def __iter__(self) -> Iterator[Frame]:
        try:
            yield from self.frames()
        finally:
            if self.stop_reason is None:
                self.stop_reason = "stopped" if self._stop.is_set() else "end of input"
            self.close()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        """Release the device or file (idempotent)."""

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        self.close()


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


class ReconnectConfig(BaseModel):
    """How a failing camera is re-opened: wait ``initial_s``, then x ``factor`` up to ``max_s``."""

    model_config = ConfigDict(extra="forbid")
    initial_s: float = Field(0.5, gt=0)
    factor: float = Field(2.0, ge=1.0)
    max_s: float = Field(30.0, gt=0)
    max_attempts: int | None = Field(None, ge=0)  # per outage; None = keep trying until stopped
    timeout_s: float = Field(5.0, gt=0)  # open/read timeout for network streams


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


# --- newest frame wins --------------------------------------------------------------------------------


class NewestFrame:
    """Reads ``source`` on a background thread; iterating yields the newest frame only.

    Frames that arrive while the consumer is busy replace each other and are counted in
    ``dropped``. The iteration ends when the source ends (after the last frame is delivered) or
    on ``stop()``; an exception in the reader is re-raised to the consumer.
    """

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self.dropped = 0
        self.delivered = 0
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._done = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._reader, name=f"capture:{source.name}", daemon=True)

    def _reader(self) -> None:
        try:
            for frame in self.source:
                with self._cond:
                    if self._latest is not None:
                        self.dropped += 1
                    self._latest = frame
                    self._cond.notify()
        except BaseException as e:  # noqa: BLE001 - handed to the consumer thread
            self._error = e
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def __iter__(self) -> Iterator[Frame]:
        if not self._thread.is_alive() and not self._done:
            self._thread.start()
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._latest is not None or self._done)
                frame, self._latest = self._latest, None
                if frame is None:
                    if self._error is not None:
                        raise self._error
                    return
            self.delivered += 1
            yield frame

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the source and wait for the reader thread (bounded)."""
        self.source.stop()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("%s: capture thread still busy after %.1f s (blocked in a read)", self.source.name, timeout)

    def __enter__(self) -> "NewestFrame":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# --- configuration ------------------------------------------------------------------------------------


class FolderSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["folder"]
    path: Path
    loop: bool = False


class VideoSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["video"]
    uri: int | str  # camera index, /dev/videoN, file path, rtsp:// or http:// URL
    loop: bool = False
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig)


class PiCameraSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["picamera"]
    size: tuple[int, int] = (640, 480)
    main_size: tuple[int, int] = (1280, 960)


class BuiltinSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["builtin"]
    frames: int = Field(60, ge=1)
    fps: float | None = None  # pace like a live camera; None = as fast as consumed
    loop: bool = False


SourceConfig = Annotated[
    Union[FolderSourceConfig, VideoSourceConfig, PiCameraSourceConfig, BuiltinSourceConfig],
    Field(discriminator="kind"),
]


class CaptureConfig(BaseModel):
    """The ``capture:`` section of the device config."""

    model_config = ConfigDict(extra="forbid")
    source: SourceConfig
    newest_frame_wins: bool = True  # false: process every frame (offline files, tests)


def open_source(cfg: SourceConfig) -> FrameSource:
    """The frame source a config section describes."""
    if cfg.kind == "folder":
        return FolderSource(cfg.path, cfg.loop)
    if cfg.kind == "video":
        return VideoSource(cfg.uri, cfg.reconnect, cfg.loop, cfg.width, cfg.height, cfg.fps)
    if cfg.kind == "picamera":
        return PiCameraSource(cfg.size, cfg.main_size)
    from edge_affectsr.device.builtin import BuiltinSequence  # noqa: PLC0415 - builtin imports this module

    return BuiltinSequence(cfg.frames, fps=cfg.fps, loop=cfg.loop)
