"""The event record: one face in one processed frame, as every sink (JSON lines, SQLite, MQTT, HTTP) sees it.

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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping


LANDMARK_PATHS = ("facemesh", "keypoints")  # how a face was aligned (FaceEvent.landmarks)


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
    plausibility the guard tests; NaN in events written before it was recorded).
    """

    preserved: bool
    agreement: bool
    kl: float
    landmark_error: float
    fallback: bool = False
    reference_prob: float = math.nan

    def __post_init__(self) -> None:
        for name in ("preserved", "agreement", "fallback"):
            object.__setattr__(self, name, bool(getattr(self, name)))
        for name in ("kl", "landmark_error", "reference_prob"):
            object.__setattr__(self, name, float(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (non-finite numbers as None)."""
        return {"preserved": self.preserved, "agreement": self.agreement, "kl": _finite_or_none(self.kl),
                "landmark_error": _finite_or_none(self.landmark_error), "fallback": self.fallback,
                "reference_prob": _finite_or_none(self.reference_prob)}


@dataclass(frozen=True)
class FaceEvent:
    """One face in one processed frame. ``bbox`` is (x0, y0, x1, y1) in frame pixels, ``lr_size``
    (width, height) of the crop fed to the SR model; ``latency_ms`` maps stage name -> ms;
    ``landmarks`` how the face was aligned: ``facemesh`` (its own landmarks) or ``keypoints``
    (FaceMesh rejected it: placed from the detection, upscaled with the mean face shape; events
    written before the field existed read back as ``facemesh``, the only path there was)."""

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
            "bbox": bbox, "lr_size": lr_size, "guard": guard, "expression": str(self.expression),
            "probabilities": {str(k): float(v) for k, v in self.probabilities.items()},
            "latency_ms": {str(k): float(v) for k, v in self.latency_ms.items()},
            "model": str(self.model), "model_version": str(self.model_version),
        }
        for name, value in coerced.items():
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """The event as plain JSON-ready values, in a stable key order (time first)."""
        return {
            "time": self.time, "frame": self.frame, "source": self.source, "track_id": self.track_id,
            "bbox": list(self.bbox), "lr_size": list(self.lr_size), "landmarks": self.landmarks,
            "expression": self.expression,
            "probabilities": _finite_map(self.probabilities, 6), "guard": self.guard.to_dict(),
            "latency_ms": _finite_map(self.latency_ms, 3), "model": self.model, "model_version": self.model_version,
        }

    def to_json(self) -> str:
        """One line of strict JSON (no NaN, no newline inside), the unit every sink writes."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FaceEvent":
        """Rebuild an event from :meth:`to_dict` output (a stored row); extra keys such as ``id`` are ignored."""
        guard = {k: (math.nan if v is None else v) for k, v in data["guard"].items()}
        names = {f for f in cls.__dataclass_fields__ if f != "guard"}
        kwargs = {k: data[k] for k in names if k in data}
        kwargs["probabilities"] = _nan_map(kwargs.get("probabilities", {}).items())
        kwargs["latency_ms"] = _nan_map(kwargs.get("latency_ms", {}).items())
        return cls(guard=Guard(**guard), **kwargs)

    @classmethod
    def from_json(cls, line: str) -> "FaceEvent":
        return cls.from_dict(json.loads(line))


def _finite_map(values: Mapping[str, float], digits: int) -> dict[str, float | None]:
    return {k: _finite_or_none(v, digits) for k, v in values.items()}


def _nan_map(items: Iterable[tuple[str, float | None]]) -> dict[str, float]:
    return {k: (math.nan if v is None else v) for k, v in items}
