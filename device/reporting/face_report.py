"""The per-face CSV report (``run --report OUT.csv``, ``process``): one row per upscaled face, naming
its source, its file (an image of a folder, a video file) and the frame, so a spreadsheet or pandas
can answer "which photo showed which expression" without parsing events.

Why every upscaled face and not only the reported events: the table is for analysis, so the
thinning of ``pipeline.report: track`` does not apply; each row is the event as the pipeline made
it (smoothed ``expression`` and ``p_<class>``, this frame's own ``raw_expression``).

Why flushed per frame: a run stopped by a signal, or killed, keeps the rows written so far (as the
JSON lines do); ``-`` writes to stdout, for pipes.
"""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path
from typing import Any, Sequence, TextIO

from edge_affectsr.device.reporting.events import FaceEvent
from edge_affectsr.reports import check_output

log = logging.getLogger(__name__)

STDOUT = "-"
HEAD = ("source", "file", "frame", "time", "track_id", "x0", "y0", "x1", "y1", "landmarks", "expression")
TAIL = ("raw_expression", "verdict", "preserved", "agreement", "kl", "landmark_error", "reference_prob", "fallback",
        "model", "model_version")


def check_report_path(path: Path | str) -> None:
    """A UserError now, before any work, when ``path`` cannot become the report."""
    if str(path) != STDOUT:
        check_output(Path(path), "--report")


class FaceReport:
    """``write(events)`` per frame; ``close()`` once. ``classes``: the critic's expression classes, one
    ``p_<class>`` column each (the header is written at once, so a run without faces leaves a valid,
    empty table)."""

    def __init__(self, path: Path | str, classes: Sequence[str]) -> None:
        check_report_path(path)
        self.path, self.classes = str(path), list(classes)
        self.columns = [*HEAD, *(f"p_{c}" for c in self.classes), *TAIL]
        self.rows = 0
        self._file: TextIO | None
        if self.path == STDOUT:
            self._file = sys.stdout
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", newline="", encoding="utf-8")
        self._csv = csv.DictWriter(self._file, self.columns, lineterminator="\n")
        self._csv.writeheader()

    def write(self, events: Sequence[FaceEvent]) -> None:
        if not events:
            return
        self._csv.writerows(self.row(e) for e in events)
        self._file.flush()
        self.rows += len(events)

    def row(self, event: FaceEvent) -> dict[str, Any]:
        """One face as CSV cells: numbers rounded as in the events, missing values empty."""
        data = event.to_dict()
        guard = data["guard"]
        x0, y0, x1, y1 = data["bbox"]
        cells = {"source": data["source"], "file": data.get("file") or "", "frame": data["frame"], "time": data["time"],
                 "track_id": data["track_id"], "x0": x0, "y0": y0, "x1": x1, "y1": y1, "landmarks": data["landmarks"],
                 "expression": data["expression"], "raw_expression": data["raw_expression"],
                 "model": data["model"], "model_version": data["model_version"]}
        cells.update({f"p_{c}": data["probabilities"].get(c) for c in self.classes})
        cells.update({k: guard[k] for k in ("verdict", "preserved", "agreement", "fallback")})
        cells.update({k: None if guard[k] is None else round(guard[k], 4) for k in ("kl", "landmark_error", "reference_prob")})
        return {k: "" if v is None else v for k, v in cells.items()}

    def close(self) -> None:
        """Finish the file (idempotent; stdout stays open)."""
        if self._file is None:
            return
        if self._file is not sys.stdout:
            self._file.close()
            log.info("report: %d faces -> %s", self.rows, self.path)
        self._file = None
