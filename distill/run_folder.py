"""What a training run folder holds besides its checkpoints, so a run can be read, plotted and compared
after the fact: ``config.yaml`` (the resolved config the run uses), ``metrics.csv`` (a row per
iteration: every loss term, the learning rate, and validation PSNR / expression agreement on the
iterations that validated), ``train.log`` (every log line of the run) — beside ``last.pt``
(resumable), ``model.pt`` (the latest EMA weights) and ``best.pt`` (the EMA weights of the best
validation PSNR so far); ``edge-affectsr plot RUN`` draws ``metrics.csv``.

Why rows are cut on resume: a run interrupted after iteration 740 resumes from its last checkpoint
(say 500) and trains 501-740 again, so the rows past the checkpoint are dropped before new ones
are appended; the file then reads as one uninterrupted run.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
from pathlib import Path
from typing import Iterator, TextIO

import yaml

from edge_affectsr.reports import write_text

CONFIG, METRICS, LOG, BEST = "config.yaml", "metrics.csv", "train.log", "best.pt"
LEADING = ("iteration", "lr", "loss")  # then the loss terms, then VALIDATION
VALIDATION = ("val_psnr", "val_agreement")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def write_config(out_dir: Path, config: dict) -> None:
    """``config.yaml``: the run's resolved config (every default filled in), keys in schema order."""
    write_text(Path(out_dir) / CONFIG, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))


class MetricsLog:
    """Appends a row per iteration to ``metrics.csv`` (flushed each row, so a crash loses nothing
    written). Columns: :data:`LEADING`, the loss terms of the first row, :data:`VALIDATION`; a
    resumed run keeps the file's own header."""

    def __init__(self, out_dir: Path, resume_at: int) -> None:
        self.path = Path(out_dir) / METRICS
        self.columns = self._kept_rows_up_to(resume_at)
        self._file: TextIO | None = None
        self._writer: csv.DictWriter | None = None

    def _kept_rows_up_to(self, iteration: int) -> list[str] | None:
        """Drop the rows after ``iteration`` (module doc); the existing header, or None."""
        if not self.path.exists():
            return None
        with self.path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            columns, rows = reader.fieldnames, [r for r in reader if int(r["iteration"]) <= iteration]
        if not columns:
            return None
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, columns)
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.path, text.getvalue())  # atomic: a crash now keeps the old file
        return list(columns)

    def write(self, iteration: int, lr: float, loss: float, terms: dict[str, float],
              validation: dict[str, float] | None = None) -> None:
        row = {"iteration": iteration, "lr": f"{lr:.6g}", "loss": _num(loss), **{k: _num(v) for k, v in terms.items()},
               **{k: _num(v) for k, v in (validation or {}).items()}}
        if self._writer is None:
            self._open([*LEADING, *terms, *VALIDATION])
        self._writer.writerow(row)
        self._file.flush()

    def _open(self, columns: list[str]) -> None:
        fresh = self.columns is None
        self.columns = self.columns or columns
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", newline="")
        self._writer = csv.DictWriter(self._file, self.columns, extrasaction="ignore")
        if fresh:
            self._writer.writeheader()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None


def _num(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.6g}"


def read_metrics(run: Path) -> dict[str, list[float]]:
    """``metrics.csv`` of a run folder as columns (empty cells as NaN)."""
    with (Path(run) / METRICS).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = list(rows[0]) if rows else []
    return {c: [float(r[c]) if r[c] not in ("", None) else math.nan for r in rows] for c in columns}


@contextlib.contextmanager
def run_log(out_dir: Path, enabled: bool = True) -> Iterator[None]:
    """Every log line of the run also appended to ``train.log`` in the run folder (``enabled``:
    False on the other ranks of a multi-process run, which share the folder)."""
    if not enabled:
        yield
        return
    path = Path(out_dir) / LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    root, level = logging.getLogger(), logging.getLogger().level
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO))  # the file gets the run's INFO lines at least
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def summary_table(result: dict, out_dir: Path) -> str:
    """The end of a run, as a short markdown table (what ``train-teacher`` and ``distill`` print)."""
    def db(value: float | None) -> str:
        return "—" if value is None or not math.isfinite(value) else f"{value:.2f} dB"

    agreement = result.get("val_agreement")
    best_at = result.get("best_iteration")
    rows = [("iterations", f"{result['iterations']:,}"),
            ("val PSNR, last", db(result.get("val_psnr"))),
            ("val PSNR, best", db(result.get("best_val_psnr")) + (f" at iteration {best_at:,}" if best_at else "")),
            ("val agreement, last", "—" if agreement is None or not math.isfinite(agreement) else f"{agreement:.3f}"),
            ("latest weights", str(Path(out_dir) / "model.pt")),
            ("best weights", str(Path(out_dir) / BEST)),
            ("curves", f"edge-affectsr plot {out_dir}")]
    return "\n".join([f"| run | {out_dir} |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])
