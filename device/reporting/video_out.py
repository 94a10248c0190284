"""The annotated video a run writes with ``--save OUT.mp4``: every processed frame, each upscaled
face boxed (green: the guard kept its expression, orange: it did not, grey: it could not verify it, a
camera-routed face without a landmark check) and labelled with its track
id, expression and probability, and the faces' SR outputs inset along the top edge.

Why OpenCV's writer and ``mp4v``: OpenCV is a device dependency already (PyAV is not), and its
wheels carry an MPEG-4 Part 2 encoder, which desktop players (VLC, mpv, QuickTime, ffmpeg) play;
browsers play only H.264, which the wheels lack (licensing), so for a web page re-encode the file.
``.avi`` gets Motion JPEG (larger, every frame a key frame: easy to step through).

The first frame fixes the video's size; a later frame of another size (a folder of photos) is
fitted inside it with black bars, so the file stays one stream with one frame per processed frame.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from edge_affectsr.device.reporting.events import CHANGED, PRESERVED, UNVERIFIED
from edge_affectsr.device.reporting.live_state import ShownFace
from edge_affectsr.errors import UserError
from edge_affectsr.reports import check_output

log = logging.getLogger(__name__)

CODECS = {".mp4": "mp4v", ".avi": "MJPG"}
DEFAULT_FPS = 25.0
# BGR, per guard verdict: kept / changed / not verified the expression
COLORS = {PRESERVED: (151, 220, 61), CHANGED: (28, 159, 255), UNVERIFIED: (173, 164, 154)}
FONT = cv2.FONT_HERSHEY_SIMPLEX
MAX_INSET = 128  # px: the SR output's own size at x4
MIN_INSET = 16  # px: frames too small for a legible inset get none


class VideoError(UserError):
    """The video cannot be written as asked; the message says what to change."""


def check_video_path(path: Path) -> None:
    """A VideoError now, before any frame is processed, for a suffix without a codec or a path
    that cannot be written."""
    if Path(path).suffix.lower() not in CODECS:
        raise VideoError(f"--save {path}: use a .mp4 (MPEG-4) or .avi (Motion JPEG) file name")
    check_output(Path(path), "--save")


class AnnotatedVideo:
    """``write(image, faces)`` per processed frame (BGR uint8 ``H x W x 3``); ``close()`` finishes the file."""

    def __init__(self, path: Path, fps: float = DEFAULT_FPS) -> None:
        check_video_path(path)
        self.path, self.fps = Path(path), fps
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None  # (width, height)

    def write(self, image: np.ndarray, faces: Sequence[ShownFace]) -> None:
        annotated = annotate(image, faces)
        if self._writer is None:
            self._open(annotated.shape[1], annotated.shape[0])
        self._writer.write(fit(annotated, self._size))
        self.frames += 1

    def _open(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fourcc = cv2.VideoWriter_fourcc(*CODECS[self.path.suffix.lower()])
        writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (width, height))
        if not writer.isOpened():
            raise VideoError(f"OpenCV cannot write {self.path} ({CODECS[self.path.suffix.lower()]}, {width}x{height}); "
                             "try the other suffix (.mp4 / .avi)")
        self._writer, self._size = writer, (width, height)

    def close(self) -> int:
        """Finish the file (idempotent); the number of frames in it."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            log.info("video: %d frames -> %s", self.frames, self.path)
        return self.frames


def annotate(image: np.ndarray, faces: Sequence[ShownFace]) -> np.ndarray:
    """A copy of ``image`` (BGR) with each face's box, label and SR inset drawn on."""
    out = image.copy()
    height, width = out.shape[:2]
    scale = max(0.4, width / 1280)
    for face in faces:
        _box(out, face, scale)
    side = min(MAX_INSET, height // 4, width // 5)  # a strip along the top edge; faces past its end get none
    if side >= MIN_INSET:
        for slot, face in enumerate(faces[: (width - 8) // (side + 8)]):
            _inset(out, face, 8 + slot * (side + 8), 8, side, scale)
    return out


def _color(face: ShownFace) -> tuple[int, int, int]:
    return COLORS[face.event.guard.verdict]


def _label(out: np.ndarray, text: str, x: int, y: int, scale: float, color: tuple[int, int, int],
           above: bool = False) -> None:
    """``text`` on a filled band of ``color`` whose top-left is (x, y), or bottom-left when ``above``
    (and there is room above)."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    height = th + base + 4
    if above and y >= height:
        y -= height
    cv2.rectangle(out, (x, y), (x + tw + 6, y + height), color, cv2.FILLED)
    cv2.putText(out, text, (x + 3, y + th + 2), FONT, scale, (20, 20, 20), 1, cv2.LINE_AA)


def _box(out: np.ndarray, face: ShownFace, scale: float) -> None:
    event = face.event
    x0, y0, x1, y1 = (int(round(v)) for v in event.bbox)
    cv2.rectangle(out, (x0, y0), (x1, y1), _color(face), max(1, int(round(2 * scale))))
    p = event.probabilities.get(event.expression, 0.0)
    _label(out, f"#{event.track_id} {event.expression} {p:.0%}", x0, y0, scale, _color(face), above=True)


def _inset(out: np.ndarray, face: ShownFace, x: int, y: int, side: int, scale: float) -> None:
    """The face's reported output (RGB), ``side`` px, framed in its verdict's colour, captioned below."""
    sr = cv2.cvtColor(cv2.resize(face.sr, (side, side), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)
    out[y:y + side, x:x + side] = sr
    cv2.rectangle(out, (x - 1, y - 1), (x + side, y + side), _color(face), 2)
    _label(out, f"#{face.event.track_id} {face.event.expression}", x, y + side + 2, scale * 0.8, _color(face))


def fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fit (width, height) ``size``, centred on black; itself when it already has that size."""
    width, height = size
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    k = min(width / w, height / h)
    nw, nh = max(1, int(w * k)), max(1, int(h * k))
    canvas = np.zeros((height, width, 3), np.uint8)
    x, y = (width - nw) // 2, (height - nh) // 2
    canvas[y:y + nh, x:x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return canvas
