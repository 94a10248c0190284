"""What the live web view shows, kept up to date by the frame loop and read by HTTP threads: the
newest frames, the last faces, each track's recent expressions.

Why references and lazy encoding: the frame loop must not pay for a page nobody has open.
:meth:`LiveState.observe` keeps references to arrays the pipeline made anyway (every frame and
crop is a new array) and a few numbers per face; a JPEG or PNG is encoded only when a browser asks
for it, in the HTTP thread, once per image.

Why ``preview`` decides what is kept, not only what is served: with ``preview: false`` no frame and
no face image is referenced at all, so no handler, bug or later change can leak one; the view then
shows boxes, labels, probabilities, verdicts and charts, which are numbers. Nothing here is ever
written to disk.

Messages (:meth:`message`) are deltas for one client: the current frame's boxes, the last faces,
the stats, and only the history points that client has not had yet (all of them when it connects).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

from edge_affectsr.device.reporting.events import FaceEvent

JPEG_QUALITY = 80
FRAMES_KEPT = 8  # recent frames a browser may still ask for by index (it asks right after the message)
IMAGE_KINDS = ("lr", "sr")


@dataclass(frozen=True)
class ShownFace:
    """One upscaled face as the outputs (web view, video, report) see it: its event, the LR crop fed
    to the SR model (RGB uint8 ``[s, s, 3]``) and the reported output (RGB uint8 ``[4s, 4s, 3]``: the
    SR output, or bicubic after a guard fallback)."""

    event: FaceEvent
    lr: np.ndarray
    sr: np.ndarray


@dataclass
class _Face:
    """A face in the ring of the last faces: its id (the state's sequence number), event and images
    (None with preview off)."""

    id: int
    event: FaceEvent
    lr: np.ndarray | None
    sr: np.ndarray | None


class LiveState:
    """``observe()`` from the frame loop; ``message()``, ``wait_newer()`` and the image getters from
    any thread. ``faces``: how many recent faces are kept; ``tracks``: how many tracks have a
    history; ``history``: points per track."""

    def __init__(self, preview: bool, faces: int = 12, tracks: int = 6, history: int = 90) -> None:
        self.preview = preview
        self._cond = threading.Condition()
        self._seq = 0  # one per observed frame and per face
        self._frame: dict[str, Any] | None = None
        self._boxes: list[dict[str, Any]] = []
        self._frames: OrderedDict[int, np.ndarray] = OrderedDict()
        self._jpeg: tuple[int, bytes] | None = None
        self._faces: deque[_Face] = deque(maxlen=faces)
        self._history: OrderedDict[int, deque[list[Any]]] = OrderedDict()
        self._tracks, self._points = tracks, history
        self._classes: list[str] = []
        self.closed = False

    # --- frame loop ------------------------------------------------------------------------------

    def observe(self, index: int, image: np.ndarray, faces: Sequence[ShownFace], source: str,
                file: str | None = None) -> None:
        """One processed frame (BGR uint8 ``H x W x 3``) and the faces upscaled in it."""
        with self._cond:
            self._seq += 1
            height, width = image.shape[:2]
            self._frame = {"index": index, "width": width, "height": height, "source": source, "file": file,
                           "seq": self._seq}
            self._boxes = [_box(f.event) for f in faces]
            if self.preview:
                self._frames[index] = image
                while len(self._frames) > FRAMES_KEPT:
                    self._frames.popitem(last=False)
            for face in faces:
                self._add_face(face)
            self._cond.notify_all()

    def _add_face(self, face: ShownFace) -> None:
        self._seq += 1
        event = face.event
        if not self._classes:
            self._classes = list(event.probabilities)
        keep = self.preview
        self._faces.append(_Face(self._seq, event, face.lr if keep else None, face.sr if keep else None))
        points = self._history.pop(event.track_id, None) or deque(maxlen=self._points)
        points.append([self._seq, event.frame, [round(event.probabilities.get(c, 0.0), 3) for c in self._classes],
                       event.guard.verdict])
        self._history[event.track_id] = points  # most recently seen last
        while len(self._history) > self._tracks:
            self._history.popitem(last=False)

    def close(self) -> None:
        """The run ended: wake every waiting stream so it can finish."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    # --- readers ---------------------------------------------------------------------------------

    def wait_newer(self, seq: int, timeout: float) -> bool:
        """Block until something newer than ``seq`` was observed (True) or ``timeout`` / close (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._seq > seq or self.closed, timeout) and self._seq > seq

    def pause(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking at once when the run ends."""
        with self._cond:
            self._cond.wait_for(lambda: self.closed, seconds)

    def message(self, since: int = 0) -> dict[str, Any]:
        """The state as plain JSON values; ``history`` holds only points newer than ``since`` (0: all)."""
        with self._cond:
            faces = [self._face_dict(f) for f in reversed(self._faces)]  # newest first
            history = {str(track): [p for p in points if p[0] > since] for track, points in self._history.items()}
            return {"seq": self._seq, "preview": self.preview, "classes": list(self._classes),
                    "frame": self._frame_dict(), "boxes": list(self._boxes), "faces": faces,
                    "history": {t: p for t, p in history.items() if p}, "tracks": [str(t) for t in self._history]}

    def _frame_dict(self) -> dict[str, Any] | None:
        if self._frame is None:
            return None
        url = f"/api/live/frame.jpg?index={self._frame['index']}" if self.preview else None
        return {**self._frame, "url": url}

    def _face_dict(self, face: _Face) -> dict[str, Any]:
        event = face.event.to_dict()
        keep = ("track_id", "frame", "source", "file", "expression", "probabilities", "guard", "landmarks", "time")
        out = {"id": face.id, **{k: event.get(k) for k in keep}}
        if face.lr is not None:
            out.update({kind: f"/api/live/face.png?id={face.id}&kind={kind}" for kind in IMAGE_KINDS})
        return out

    def frame_jpeg(self, index: int | None = None) -> tuple[int, bytes] | None:
        """(its index, JPEG bytes) of frame ``index`` (None: the newest); None with preview off,
        before the first frame, or when that frame is no longer kept (the page then skips it rather
        than draw its boxes on another frame)."""
        with self._cond:
            if not self._frames:
                return None
            index = next(reversed(self._frames)) if index is None else index
            if index not in self._frames:
                return None
            cached, image = self._jpeg, self._frames[index]
        if cached is not None and cached[0] == index:
            return cached
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            return None
        with self._cond:
            self._jpeg = (index, data.tobytes())
            return self._jpeg

    def face_png(self, face_id: int, kind: str) -> bytes | None:
        """PNG of a kept face's ``lr`` or ``sr`` image; None when it is gone or preview is off."""
        with self._cond:
            face = next((f for f in self._faces if f.id == face_id), None)
        image = None if face is None else face.lr if kind == "lr" else face.sr
        if image is None:
            return None
        ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        return data.tobytes() if ok else None


def _box(event: FaceEvent) -> dict[str, Any]:
    """What the frame overlay draws for one face."""
    return {"track_id": event.track_id, "bbox": list(event.bbox), "expression": event.expression,
            "p": round(event.probabilities.get(event.expression, 0.0), 3), "preserved": event.guard.preserved,
            "verdict": event.guard.verdict}
