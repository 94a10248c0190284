"""``edge-affectsr plot RUN_DIR ...``: a training run's curves from its ``metrics.csv``
(:mod:`edge_affectsr.distill.run_folder`) as one PNG of three panels: every loss term (running mean,
log scale), the learning rate, and validation PSNR with expression agreement. Several runs share
the axes (a fine-tune beside its parent, seeds beside each other), one colour per run.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edge_affectsr.distill.run_folder import LEADING, METRICS, VALIDATION, read_metrics
from edge_affectsr.errors import UserError

LINE_STYLES = ("-", "--", ":", "-.")


def running_mean(values: list[float], n: int) -> np.ndarray:
    """The mean of each value and the ``n - 1`` before it (fewer at the start)."""
    x = np.asarray(values, float)
    if n <= 1 or len(x) == 0:
        return x
    sums = np.concatenate([[0.0], np.cumsum(x)])
    end = np.arange(1, len(x) + 1)
    start = np.maximum(end - n, 0)
    return (sums[end] - sums[start]) / (end - start)


def load_run(run: Path) -> dict[str, list[float]]:
    """``metrics.csv`` of ``run``; UserError when the folder has none (not a run, or from before it existed)."""
    if not (Path(run) / METRICS).is_file():
        raise UserError(f"{run}: no {METRICS} here; give a run folder of train-teacher or distill "
                        "(runs started before metrics.csv existed have none)")
    metrics = read_metrics(run)
    if not metrics.get("iteration"):
        raise UserError(f"{run / METRICS} has no rows yet")
    return metrics


def plot_runs(runs: list[Path], out: Path, smooth: int = 50) -> None:
    """Draw ``runs``' curves into ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = {Path(r): load_run(r) for r in runs}
    fig, (ax_loss, ax_lr, ax_val) = plt.subplots(3, 1, figsize=(9, 10), sharex=True,
                                                 gridspec_kw={"height_ratios": [3, 1, 2]})
    ax_agree = ax_val.twinx()
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (run, m) in enumerate(data.items()):
        colour, name = colours[k % len(colours)], run.name or str(run)
        it = np.asarray(m["iteration"])
        terms = [c for c in m if c not in (*LEADING, *VALIDATION)]
        for j, term in enumerate(["loss", *terms]):
            ax_loss.plot(it, running_mean(m[term], smooth), LINE_STYLES[j % len(LINE_STYLES)] if j else "-",
                         color=colour, lw=2 if term == "loss" else 1, alpha=1 if term == "loss" else 0.7,
                         label=f"{name}: {term}" + (" (weighted sum)" if term == "loss" else ""))
        ax_lr.plot(it, m["lr"], color=colour, label=name)
        _validation(ax_val, ax_agree, it, m, colour, name)
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel(f"loss (running mean of {smooth})" if smooth > 1 else "loss")
    ax_loss.legend(fontsize="x-small", ncol=2)
    ax_lr.set_ylabel("learning rate")
    ax_val.set_ylabel("val PSNR (dB), solid")
    ax_agree.set_ylabel("val expression agreement, dashed")
    ax_val.set_xlabel("iteration")
    for ax in (ax_loss, ax_lr, ax_val):
        ax.grid(alpha=0.3)
    fig.suptitle(", ".join(r.name or str(r) for r in data))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _validation(ax_val, ax_agree, it: np.ndarray, m: dict[str, list[float]], colour: str, name: str) -> None:
    """Validation points only (the iterations that validated)."""
    for key, ax, style in (("val_psnr", ax_val, "o-"), ("val_agreement", ax_agree, "s--")):
        values = np.asarray(m.get(key, [math.nan] * len(it)), float)
        keep = np.isfinite(values)
        if keep.any():
            ax.plot(it[keep], values[keep], style, color=colour, ms=3, label=f"{name}: {key}")
