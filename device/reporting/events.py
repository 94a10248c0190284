"""The event records every sink (JSON lines, SQLite, MQTT, HTTP) sees: a face in one processed frame
(:class:`FaceEvent`, kind ``face``), a track that ended (:class:`TrackEvent`, ``track``) and the group
seen over the last seconds (:class:`GroupEvent`, ``group``). Each JSON line carries its ``kind``.

Why one frozen record: the sinks must agree on what was reported, and a record that cannot change
after it is made can be handed to several sinks (and threads) without copies. Values are coerced to
plain Python in ``__post_init__`` (numpy scalars and arrays come straight from the pipeline), and
non-finite floats become ``None`` on output, because JSON has no NaN and a consumer in another
language would reject the line.

Stdlib only (no numpy import): the store's crash test starts a child process per run.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, ClassVar, Iterable, Mapping


LANDMARK_PATHS = ("facemesh", "keypoints")  # how a face was aligned (FaceEvent.landmarks)
GUARD_REFERENCES = ("bicubic", "calibrated")  # what the guard compared with (Guard.reference)
PRESERVED, CHANGED, UNVERIFIED = GUARD_VERDICTS = ("preserved", "changed", "unverified")  # Guard.verdict


def utc_now_iso() -> str:
    """The current time as ISO 8601 UTC with milliseconds and a ``Z``: fixed width, so it sorts as text."""
    return format_time(datetime.now(timezone.utc))


def format_time(moment: datetime) -> str:
    """``moment`` (aware, or naive meaning UTC) in the event format ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (``Z`` or an offset; no offset means UTC) as an aware datetime; ValueError if not one."""
    moment = datetime.fromisoformat(text.strip())
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _finite_or_none(value: Any, digits: int | None = None) -> float | None:
    """A float for JSON: NaN and infinities become None; ``digits`` rounds away float32 noise."""
    value = float(value)
    if not math.isfinite(value):
        return None
    return value if digits is None else round(value, digits)


@dataclass(frozen=True)
class Guard:
    """The expression-preservation guard's verdict on one upscale.

    ``agreement``: the critic's top-1 on the SR output equals its top-1 on the bicubic upscale (for
    information: the guard asks for plausibility, not agreement, see ``device/inference/guard.py``);
    ``kl``: KL(p_bicubic || p_SR); ``landmark_error``: FaceMesh on SR vs the input's landmarks,
    over the inter-ocular distance (NaN when not checked: the check is off, or the face had no
    landmarks of its own, ``FaceEvent.landmarks == "keypoints"``); ``fallback``: the bicubic upscale was reported instead;
    ``reference_prob``: the bicubic upscale's probability of the SR output's top expression (the
    plausibility the guard tests; NaN in events written before it was recorded); ``landmark_checked``:
    FaceMesh ran on this very output (False: the check is off, the face had no landmarks, or the
    guard's schedule skipped it and ``landmark_error`` is the track's last measured one);
    ``reference``: what ``kl`` and ``reference_prob`` were measured against: ``bicubic`` (the critic's
    reading of the bicubic upscale; also every event written before the field) or ``calibrated``
    (the bundle's ``guard_reference`` of that reading, on faces routed to the camera model).
    ``verdict``: ``preserved``, ``changed`` or ``unverified`` (a camera-routed face the guard had no
    check for that means anything: ``guard.camera_faces``); ``preserved`` is ``verdict ==
    "preserved"``, kept so consumers of the boolean go on working. Omitted (events written before
    the field), it follows ``preserved``: ``preserved`` or ``changed``, the only two there were.
    """

    preserved: bool
    agreement: bool
    kl: float
    landmark_error: float
    fallback: bool = False
    reference_prob: float = math.nan
    landmark_checked: bool = True
    reference: str = "bicubic"
    verdict: str | None = None

    def __post_init__(self) -> None:
        for name in ("preserved", "agreement", "fallback", "landmark_checked"):
            object.__setattr__(self, name, bool(getattr(self, name)))
        if self.reference not in GUARD_REFERENCES:
            raise ValueError(f"guard reference must be one of {GUARD_REFERENCES}, got {self.reference!r}")
        if self.verdict is None:
            object.__setattr__(self, "verdict", PRESERVED if self.preserved else CHANGED)
        if self.verdict not in GUARD_VERDICTS:
            raise ValueError(f"guard verdict must be one of {GUARD_VERDICTS}, got {self.verdict!r}")
        if self.preserved != (self.verdict == PRESERVED):
            raise ValueError(f"guard preserved={self.preserved} contradicts verdict {self.verdict!r}")
        for name in ("kl", "landmark_error", "reference_prob"):
            object.__setattr__(self, name, float(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (non-finite numbers as None)."""
        return {"preserved": self.preserved, "agreement": self.agreement, "kl": _finite_or_none(self.kl),
                "landmark_error": _finite_or_none(self.landmark_error), "fallback": self.fallback,
                "reference_prob": _finite_or_none(self.reference_prob), "landmark_checked": self.landmark_checked,
                "reference": self.reference, "verdict": self.verdict}

    @classmethod
    def judged(cls, verdict: str, **numbers: Any) -> "Guard":
        """The record of a ``verdict`` (``preserved`` set from it)."""
        return cls(preserved=verdict == PRESERVED, verdict=verdict, **numbers)


class Record:
    """What every event kind shares: ``kind``, ``time``, ``to_dict()`` and its one JSON line."""

    kind: ClassVar[str]
    time: str

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self) -> str:
        """One line of strict JSON (no NaN, no newline inside), the unit every sink writes."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """Rebuild a record from :meth:`to_dict` output (a stored row); extra keys such as ``id`` are ignored."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    @classmethod
    def from_json(cls, line: str):
        return cls.from_dict(json.loads(line))


@dataclass(frozen=True)
class FaceEvent(Record):
    """One face in one processed frame. ``bbox`` is (x0, y0, x1, y1) in frame pixels, ``lr_size``
    (width, height) of the crop fed to the SR model; ``latency_ms`` maps stage name -> ms;
    ``landmarks`` how the face was aligned: ``facemesh`` (its own landmarks) or ``keypoints``
    (FaceMesh rejected it: placed from the detection, upscaled with the mean face shape; events
    written before the field existed read back as ``facemesh``, the only path there was).
    ``expression`` and ``probabilities`` are the track's smoothed ones (``smoothing:``), ``raw_*``
    this frame's own (the same when smoothing is off, or in events written before smoothing).
    ``file``: the image of a folder source, or the video file, the frame came from (its name; None
    for cameras, streams and the built-in clip); ``frame`` counts the source's frames from 0.
    ``sr_model``: with a routed bundle, which SR model the router picked (``camera``: sr_int8,
    ``clean``: sr_clean_int8); None for a bundle with one SR model."""

    kind: ClassVar[str] = "face"

    frame: int
    source: str
    track_id: int
    bbox: tuple[float, float, float, float]
    lr_size: tuple[int, int]
    expression: str
    probabilities: Mapping[str, float]
    guard: Guard
    latency_ms: Mapping[str, float]
    model: str
    model_version: str
    time: str = field(default_factory=utc_now_iso)
    landmarks: str = "facemesh"
    raw_expression: str | None = None
    raw_probabilities: Mapping[str, float] | None = None
    file: str | None = None
    sr_model: str | None = None

    def __post_init__(self) -> None:
        bbox = tuple(float(v) for v in self.bbox)
        if len(bbox) != 4:
            raise ValueError(f"bbox needs 4 numbers (x0, y0, x1, y1), got {len(bbox)}")
        lr_size = tuple(int(v) for v in self.lr_size)
        if len(lr_size) != 2:
            raise ValueError(f"lr_size needs (width, height), got {len(lr_size)} numbers")
        guard = self.guard if isinstance(self.guard, Guard) else Guard(**self.guard)
        if self.landmarks not in LANDMARK_PATHS:
            raise ValueError(f"landmarks must be one of {LANDMARK_PATHS}, got {self.landmarks!r}")
        coerced = {
            "frame": int(self.frame), "track_id": int(self.track_id), "source": str(self.source),
            "file": None if self.file is None else str(self.file),
            "bbox": bbox, "lr_size": lr_size, "guard": guard, "expression": str(self.expression),
            "probabilities": _float_map(self.probabilities),
            "raw_expression": str(self.expression if self.raw_expression is None else self.raw_expression),
            "raw_probabilities": _float_map(self.probabilities if self.raw_probabilities is None
                                            else self.raw_probabilities),
            "latency_ms": _float_map(self.latency_ms), "model": str(self.model), "model_version": str(self.model_version),
        }
        _set_fields(self, coerced)

    def to_dict(self) -> dict[str, Any]:
        """The event as plain JSON-ready values, in a stable key order (time first)."""
        return {
            "time": self.time, "kind": self.kind, "frame": self.frame, "source": self.source, "file": self.file,
            "track_id": self.track_id, "bbox": list(self.bbox), "lr_size": list(self.lr_size), "landmarks": self.landmarks,
            "expression": self.expression, "probabilities": _finite_map(self.probabilities, 6),
            "raw_expression": self.raw_expression, "raw_probabilities": _finite_map(self.raw_probabilities, 6),
            "guard": self.guard.to_dict(),
            "latency_ms": _finite_map(self.latency_ms, 3), "model": self.model, "model_version": self.model_version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FaceEvent":
        """Rebuild an event from :meth:`to_dict` output (a stored row); extra keys such as ``id`` are ignored."""
        guard = {k: (math.nan if v is None else v) for k, v in data["guard"].items()}
        guard.setdefault("landmark_checked", not math.isnan(guard["landmark_error"]))  # before the schedule
        names = {f.name for f in fields(cls) if f.name != "guard"}
        kwargs = {k: data[k] for k in names if k in data}
        kwargs["probabilities"] = _nan_map(kwargs.get("probabilities", {}).items())
        if kwargs.get("raw_probabilities") is not None:
            kwargs["raw_probabilities"] = _nan_map(kwargs["raw_probabilities"].items())
        kwargs["latency_ms"] = _nan_map(kwargs.get("latency_ms", {}).items())
        return cls(guard=Guard(**guard), **kwargs)


@dataclass(frozen=True)
class TrackEvent(Record):
    """A track that ended: who it was over its whole life. ``frames`` it was detected in, ``upscales``
    of them upscaled and labelled; ``expression`` the most frequent smoothed label of those, ``share``
    its fraction, ``probabilities`` the mean smoothed distribution; ``guard_pass_rate`` the fraction
    of its verified upscales the guard passed (NaN, ``null`` in JSON, when none was verified);
    ``guard_unverified`` how many upscales it could not verify (0 in events written before the field:
    every face was verified then); ``ended``: ``lost`` (the tracker expired it) or ``end of input``."""

    kind: ClassVar[str] = "track"
    source: str
    track_id: int
    start: str
    duration_s: float
    frames: int
    upscales: int
    expression: str
    share: float
    probabilities: Mapping[str, float]
    guard_pass_rate: float
    ended: str
    model: str
    model_version: str
    time: str = field(default_factory=utc_now_iso)
    guard_unverified: int = 0

    def __post_init__(self) -> None:
        _set_fields(self, {"track_id": int(self.track_id), "duration_s": float(self.duration_s),
                           "frames": int(self.frames), "upscales": int(self.upscales), "share": float(self.share),
                           "probabilities": _float_map(self.probabilities),
                           "guard_pass_rate": math.nan if self.guard_pass_rate is None else float(self.guard_pass_rate),
                           "guard_unverified": int(self.guard_unverified)})

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "kind": self.kind, "source": self.source, "track_id": self.track_id,
                "start": self.start, "duration_s": round(self.duration_s, 3), "frames": self.frames,
                "upscales": self.upscales, "expression": self.expression, "share": round(self.share, 4),
                "probabilities": _finite_map(self.probabilities, 6),
                "guard_pass_rate": _finite_or_none(self.guard_pass_rate, 4), "guard_unverified": self.guard_unverified,
                "ended": self.ended, "model": self.model, "model_version": self.model_version}



@dataclass(frozen=True)
class GroupEvent(Record):
    """The group over the last ``window_s`` seconds (``start`` to ``time``): ``faces`` distinct tracks
    labelled in it, ``faces_per_frame`` upscaled faces per processed frame; per track its mean
    smoothed distribution over the window: ``histogram`` counts the tracks by its top expression,
    ``probabilities`` is the mean over tracks (each person counts once, however long seen)."""

    kind: ClassVar[str] = "group"
    source: str
    start: str
    window_s: float
    frames: int
    faces: int
    faces_per_frame: float
    histogram: Mapping[str, int]
    probabilities: Mapping[str, float]
    time: str = field(default_factory=utc_now_iso)

    def __post_init__(self) -> None:
        _set_fields(self, {"window_s": float(self.window_s), "frames": int(self.frames), "faces": int(self.faces),
                           "faces_per_frame": float(self.faces_per_frame),
                           "histogram": {str(k): int(v) for k, v in self.histogram.items()},
                           "probabilities": _float_map(self.probabilities)})

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "kind": self.kind, "source": self.source, "start": self.start,
                "window_s": round(self.window_s, 3), "frames": self.frames, "faces": self.faces,
                "faces_per_frame": round(self.faces_per_frame, 3), "histogram": dict(self.histogram),
                "probabilities": _finite_map(self.probabilities, 6)}



EVENT_KINDS: dict[str, type[Record]] = {cls.kind: cls for cls in (FaceEvent, TrackEvent, GroupEvent)}


def _set_fields(record: object, values: Mapping[str, Any]) -> None:
    """Coerced values into a frozen record (from ``__post_init__``)."""
    for name, value in values.items():
        object.__setattr__(record, name, value)


def _float_map(values: Mapping[str, Any]) -> dict[str, float]:
    return {str(k): float(v) for k, v in values.items()}


def _finite_map(values: Mapping[str, float], digits: int) -> dict[str, float | None]:
    return {k: _finite_or_none(v, digits) for k, v in values.items()}


def _nan_map(items: Iterable[tuple[str, float | None]]) -> dict[str, float]:
    return {k: (math.nan if v is None else v) for k, v in items}
