"""Optional saving of the upscaled face crops as PNGs, under a disk quota. Off by default.

Why off by default: a crop is a picture of a person's face, which is personal data; the events
(numbers only) are what the daemon is for. Turn it on to audit the model or to collect hard cases.

Why a quota and not a count: the disk is shared with the event database and the system, so the
folder is bounded in bytes; when a new crop takes it over ``quota_mb`` the oldest crops are
deleted first. A crop is written to a ``.tmp`` file and renamed, so a reader (or a crash) never
leaves a half-written PNG behind under a real name.

A full disk (ENOSPC, EDQUOT) or any other write error must not stop the daemon: it is logged once,
counted, and saving turns itself off until the daemon restarts (retrying every frame against a
full disk would only produce more errors).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections import deque
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge_affectsr.device.reporting.events import FaceEvent, parse_time
from edge_affectsr.errors import UserError

log = logging.getLogger(__name__)

SUFFIX = ".png"
TMP_SUFFIX = ".png.tmp"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
PNG_COMPRESSION = 3  # 0-9: 3 is within a few % of 9 on faces at a fraction of the time


class CropsError(UserError):
    """The crop folder cannot be used; the message names it."""


class CropsConfig(BaseModel):
    """The ``crops:`` section of the device config."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(
        False, description="save each event's upscaled face as PNG (personal data: off unless needed)")
    folder: Path = Field(Path("crops"), description="where the PNGs go")
    quota_mb: float = Field(200.0, gt=0, description="size limit of the folder, MB: the oldest crops go first")


class CropSaver:
    """``save(event, image)`` writes one PNG (or does nothing when off); counters for /api/stats."""

    def __init__(self, config: CropsConfig) -> None:
        self.config = config
        self.folder = Path(config.folder)
        self.quota_bytes = int(config.quota_mb * 1e6)
        self.enabled = config.enabled
        self.saved = self.deleted = self.errors = self.disk_full = 0
        self._lock = threading.Lock()
        self._files: deque[tuple[Path, int]] = deque()  # oldest first
        self._bytes = 0
        if self.enabled:
            self._scan()
            self._enforce_quota()
            log.info("saving face crops to %s (quota %.1f MB, %.1f MB used)", self.folder, config.quota_mb, self._bytes / 1e6)

    def _scan(self) -> None:
        """Adopt the crops already in the folder (oldest first), remove temporaries a crash left."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for tmp in self.folder.glob(f"*{TMP_SUFFIX}"):
                tmp.unlink(missing_ok=True)
            found = [(p.stat().st_mtime, p.name, p) for p in self.folder.glob(f"*{SUFFIX}") if p.is_file()]
        except OSError as e:
            raise CropsError(f"cannot use the crop folder {self.folder}: {e.strerror or e}; check crops.folder") from None
        for _, _, path in sorted(found):
            size = path.stat().st_size
            self._files.append((path, size))
            self._bytes += size

    @property
    def used_bytes(self) -> int:
        return self._bytes

    def save(self, event: FaceEvent, image: np.ndarray) -> Path | None:
        """Write ``image`` (BGR or grey uint8, OpenCV's convention) as the crop of ``event``; its path, or
        None when saving is off or failed (a failure is logged and counted, never raised)."""
        with self._lock:
            if not self.enabled:
                return None
            try:
                ok, png = cv2.imencode(SUFFIX, image, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
            except cv2.error:  # a float or empty array: the caller's bug, but not worth the daemon
                ok = False
            if not ok:
                self.errors += 1
                log.error("crop of frame %d track %d could not be encoded as PNG", event.frame, event.track_id)
                return None
            path = self._unique_path(event)
            try:
                _write_atomic(path, png.tobytes())
            except OSError as e:
                self._write_failed(path, e)
                return None
            self._files.append((path, png.nbytes))
            self._bytes += png.nbytes
            self.saved += 1
            self._enforce_quota()
            return path

    def _unique_path(self, event: FaceEvent) -> Path:
        """``<UTC time>_f<frame>_t<track>.png``: names sort by time; a suffix avoids overwriting."""
        stamp = parse_time(event.time).strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z"
        stem = f"{stamp}_f{event.frame:07d}_t{event.track_id:05d}"
        path, n = self.folder / f"{stem}{SUFFIX}", 1
        while path.exists():
            path, n = self.folder / f"{stem}_{n}{SUFFIX}", n + 1
        return path

    def _write_failed(self, path: Path, error: OSError) -> None:
        """Count the failure, turn saving off, say so once."""
        self.enabled = False
        if error.errno in DISK_FULL:
            self.disk_full += 1
            log.error("disk full writing %s; saving face crops is off until restart", path.name)
        else:
            self.errors += 1
            log.error("cannot write %s (%s); saving face crops is off until restart", path, error.strerror or error)

    def _enforce_quota(self) -> None:
        """Delete the oldest crops until the folder is within its quota."""
        while self._bytes > self.quota_bytes and self._files:
            path, size = self._files.popleft()
            try:
                path.unlink(missing_ok=True)
            except OSError as e:
                log.warning("cannot delete old crop %s: %s", path, e.strerror or e)
            self._bytes -= size
            self.deleted += 1

    def summary(self) -> dict[str, int | bool | float]:
        """Numbers for /api/stats."""
        with self._lock:
            return {"enabled": self.enabled, "saved": self.saved, "deleted": self.deleted, "errors": self.errors,
                    "disk_full": self.disk_full, "mb_used": round(self._bytes / 1e6, 3)}


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to ``<name>.tmp`` and rename over ``path``; the temporary is removed when the write fails."""
    tmp = path.with_name(path.stem + TMP_SUFFIX)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
