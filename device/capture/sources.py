"""The frame sources, and :func:`open_source` that builds the one a config section describes.

Sources: a folder of images, anything OpenCV's VideoCapture opens (camera index, ``/dev/videoN``,
a file, an rtsp/http URL), the Raspberry Pi camera (picamera2, imported only when chosen), and
the built-in synthetic sequence (``capture/builtin.py``); all yield ``Frame`` (``capture/frame.py``).

A camera that stops delivering is re-opened with exponential backoff (``capture/backoff.py``), one
log line per attempt, rather than ending the daemon. A file is not a camera: one that cannot be
opened or decoded is a :class:`CaptureError` naming it, never retried. A folder's unreadable or
oversized image (``capture/limits.py``, checked before decoding) is skipped, logged and counted.
When the daemon's watchdog replaces a silent source, the new one resumes its predecessor
(:meth:`FrameSource.resume`): a folder goes on after the last image taken, a camera's backoff keeps
growing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from edge_affectsr.device.capture.backoff import Backoff
from edge_affectsr.device.capture.builtin import BuiltinSequence
from edge_affectsr.device.capture.config import ReconnectConfig, SourceConfig
from edge_affectsr.device.capture.frame import CaptureError, Frame, FrameSource
from edge_affectsr.device.capture.limits import FrameLimits, Oversized, Unreadable, check_image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


# --- a folder of images ---------------------------------------------------------------------------


class FolderSource(FrameSource):
    """Images of a folder in sorted name order; unreadable and oversized files are logged, counted, skipped."""

    def __init__(self, folder: str | Path, loop: bool = False, limits: FrameLimits | None = None) -> None:
        super().__init__()
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise CaptureError(f"image folder not found: {self.folder}")
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.files:
            log.warning("%s: no images (%s)", self.folder, ", ".join(IMAGE_SUFFIXES))
        self.loop = loop
        self.limits = limits or FrameLimits()
        self.name = str(self.folder)
        self.position = 0  # the next file to take

    def resume(self, previous: FrameSource) -> None:
        """Go on after the last image ``previous`` took (the one whose decode stalled is not retried)."""
        super().resume(previous)
        if isinstance(previous, FolderSource) and previous.folder == self.folder:
            self.files, self.position = previous.files, previous.position

    def frames(self) -> Iterator[Frame]:
        while not self.stopping:
            while self.position < len(self.files):
                if self.stopping:
                    return
                path = self.files[self.position]
                self.position += 1  # taken before decoding: a watchdog reopen never repeats it
                image = self._load(path)
                if image is not None:
                    yield self.frame(image, path.name)
            if not self.loop or self.read == 0:
                return
            self.position = 0

    def _load(self, path: Path) -> np.ndarray | None:
        """BGR uint8, or None for a file skipped (logged and counted)."""
        try:
            check_image(path, self.limits)
        except Oversized as e:
            self.oversized += 1
            log.warning("skipping %s: %s (%d oversized so far)", path.name, e, self.oversized)
            return None
        except Unreadable as e:
            return self._unreadable(path, str(e))
        image = _decode(path)
        return image if image is not None else self._unreadable(path, "OpenCV cannot decode it")

    def _unreadable(self, path: Path, why: str) -> None:
        self.unreadable += 1
        log.warning("skipping unreadable image %s: %s (%d unreadable so far)", path.name, why, self.unreadable)
        return None


def _decode(path: Path) -> np.ndarray | None:
    """BGR uint8, or None for a file OpenCV cannot decode (never raises)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
        return cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except (OSError, cv2.error):
        return None


# --- OpenCV VideoCapture ----------------------------------------------------------------------------


def _is_url(uri: str) -> bool:
    return "://" in uri


class VideoSource(FrameSource):
    """A camera index, ``/dev/videoN``, a video file or a network stream, through OpenCV.

    A live source (camera or URL) that fails to open or to deliver is re-opened after the waits of
    its :class:`Backoff`, one log line per attempt; a backoff that runs out of attempts ends the
    iteration with ``stop_reason`` saying so. While it waits, ``reconnecting`` is True (the daemon's
    watchdog leaves it alone then). A file ends at its last frame (or loops); a file that is
    missing, cannot be opened, or opens but yields no frame is a CaptureError naming it. Frames
    larger than ``limits`` are refused before the first read where the capture reports its size
    (CaptureError), and skipped and counted where it does not.
    """

    def __init__(self, uri: int | str, reconnect: ReconnectConfig | None = None, loop: bool = False,
                 width: int | None = None, height: int | None = None, fps: float | None = None,
                 limits: FrameLimits | None = None) -> None:
        super().__init__()
        self.uri = int(uri) if isinstance(uri, str) and uri.isdigit() else uri
        self.reconnect = reconnect or ReconnectConfig()
        self.backoff = Backoff(self.reconnect)
        self.loop = loop
        self.limits = limits or FrameLimits()
        self.request = {cv2.CAP_PROP_FRAME_WIDTH: width, cv2.CAP_PROP_FRAME_HEIGHT: height, cv2.CAP_PROP_FPS: fps}
        self.is_file = isinstance(self.uri, str) and not _is_url(self.uri) and not self.uri.startswith("/dev/")
        self.name = f"camera {self.uri}" if isinstance(self.uri, int) else str(self.uri)
        self.reconnects = 0
        self._cap: cv2.VideoCapture | None = None
        self._since_open = 0
        self._opened_once = False

    def resume(self, previous: FrameSource) -> None:
        """Take over ``previous``'s backoff: the outage goes on, and so do its growing waits."""
        super().resume(previous)
        if isinstance(previous, VideoSource):
            self.backoff, self.reconnects, self._opened_once = previous.backoff, previous.reconnects, True

    def frames(self) -> Iterator[Frame]:
        while not self.stopping:
            if self._cap is None and not self._connect():
                return
            ok, image = self._cap.read()
            if ok and image is not None:
                if self._oversized_frame(image):
                    continue
                self.backoff.reset()
                self._since_open += 1
                yield self.frame(image, Path(self.uri).name if self.is_file else None)
                continue
            if not self.is_file:
                log.warning("%s: read failed, reconnecting", self.name)
            elif self._since_open == 0:
                raise CaptureError(f"{self.name}: no frame could be decoded (a corrupt file, or a codec this "
                                   "OpenCV build lacks); convert it, e.g. ffmpeg -i IN -c:v mjpeg OUT.avi")
            elif not self.loop:
                self.stop_reason = "end of file"
                return
            else:
                log.info("%s: end of file, looping", self.name)
            self._release()

    def _oversized_frame(self, image: np.ndarray) -> bool:
        """A decoded frame over the limits (a stream that did not report its size): counted, skipped."""
        problem = self.limits.problem(image.shape[1], image.shape[0])
        if problem is not None:
            self.oversized += 1
            if self.oversized == 1 or self.oversized % 1000 == 0:
                log.warning("%s: skipping frames of %s (%d so far)", self.name, problem, self.oversized)
        return problem is not None

    def _connect(self) -> bool:
        """Open the source (a file at once; a camera after the backoff's wait, but for its first open);
        False when attempts run out or stop() was called."""
        if self.is_file or not self._opened_once:
            self._opened_once = True
            if self._open():
                return True
            if self.is_file:
                raise CaptureError(f"cannot open the video file {self.name}: not a video OpenCV can read "
                                   "(corrupt, or a container this OpenCV build lacks)")
        self.reconnecting = True
        try:
            while (delay := self.backoff.next_delay()) is not None:
                log.warning("%s: cannot open; reconnect attempt %d/%s in %.2f s", self.name, self.backoff.attempts,
                            self.backoff.limit, delay)
                if self._stop.wait(delay):
                    return False
                self.reconnects += 1
                if self._open():
                    log.info("%s: reconnected after %d attempts", self.name, self.backoff.attempts)
                    return True
        finally:
            self.reconnecting = False
        self.stop_reason = f"gave up after {self.reconnect.max_attempts} reconnect attempts"
        log.error("%s: %s", self.name, self.stop_reason)
        return False

    def _open(self) -> bool:
        if self.is_file and not Path(self.uri).is_file():
            raise CaptureError(f"video file not found: {self.name}")
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
        self._check_size(cap)
        self._cap, self._since_open = cap, 0
        return True

    def _check_size(self, cap: cv2.VideoCapture) -> None:
        """Refuse frames over the limits before decoding one, where the capture knows their size."""
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        problem = self.limits.problem(width, height) if width > 0 and height > 0 else None
        if problem is not None:
            cap.release()
            raise CaptureError(f"{self.name}: frames of {problem}; use a smaller size or raise the limit")

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

    def frames(self) -> Iterator[Frame]:
        self._cam.start()
        while not self.stopping:
            yuv = self._cam.capture_array("lores")
            yield self.frame(cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420))

    def close(self) -> None:
        try:
            self._cam.stop()
        except Exception:  # noqa: BLE001 - best effort on shutdown; the camera may never have started
            pass


# --- from the config -----------------------------------------------------------------------------------


def open_source(cfg: SourceConfig, limits: FrameLimits | None = None, previous: FrameSource | None = None) -> FrameSource:
    """The frame source a config section describes; resuming ``previous`` (the source it replaces
    after a watchdog reopen) when given."""
    source = _build(cfg, limits or FrameLimits())
    if previous is not None:
        source.resume(previous)
    return source


def _build(cfg: SourceConfig, limits: FrameLimits) -> FrameSource:
    if cfg.kind == "folder":
        return FolderSource(cfg.path, cfg.loop, limits)
    if cfg.kind == "video":
        return VideoSource(cfg.uri, cfg.reconnect, cfg.loop, cfg.width, cfg.height, cfg.fps, limits)
    if cfg.kind == "picamera":
        return PiCameraSource(cfg.size, cfg.main_size)
    return BuiltinSequence(cfg.frames, fps=cfg.fps, loop=cfg.loop)
