"""The camera benchmark: ``eval`` over a grid of camera conditions (``--degradation grid``).

Why a grid and not one number: a model that gains 2 dB on the clean protocol can gain nothing on a
24 px face from a noisy, compressed stream (issue 16). The same faces are rendered by the camera
model (``edge_affectsr/runtime/degradation.py``) at crop sides {16, 24, 32} px in three conditions
— lens blur only, noise + JPEG, noise + H.264 — each face with its own seeded draw, identical for
every model; the clean protocol stays as the first cell because the published face-SR literature
reports it. Each cell is a full ``eval`` report; the summary puts every model's gain over bicubic
and its expression agreement (as a multiple of bicubic's) side by side.
"""

from __future__ import annotations

from pathlib import Path

from edge_affectsr.distill.evaluate import evaluate, load_backends
from edge_affectsr.runtime.degradation import GRID_CELLS, GRID_SIZES

GRID = ("clean", *(f"{cell}:{size}" for size in sorted(GRID_SIZES, reverse=True) for cell in GRID_CELLS))


def expand(specs: list[str]) -> list[str]:
    """``grid`` stands for every cell of :data:`GRID`; other specs are kept, in order, once each."""
    out: list[str] = []
    for spec in specs:
        for s in GRID if spec == "grid" else (spec,):
            if s not in out:
                out.append(s)
    return out


def evaluate_cells(models: list[str], data: Path, scale: int, specs: list[str], **options) -> list[tuple]:
    """:func:`evaluate` for each degradation cell, the models loaded once."""
    backends = load_backends(models, scale, options.get("seeds", False))
    return [evaluate(models, data, scale, degradation=spec, backends=backends, **options) for spec in specs]


def summary_table(reports: list[dict]) -> str:
    """A row per (cell, model): PSNR and its gain over bicubic, agreement and its multiple of
    bicubic's, KL, FER accuracy where the set is labelled; and how often FaceMesh found the LR face
    (and, for a routed bundle, the share of faces its router sent to the camera-robust model)."""
    labelled = any(r.get("hr_fer_accuracy") is not None for r in reports)
    routed = any(row.get("routed_to_camera") is not None for r in reports for row in r["rows"])
    head = ["cell", "FaceMesh found", "model", "PSNR (dB)", "Δ bicubic (dB)", "SSIM", "agreement", "× bicubic", "KL(HR‖SR)"]
    head += ["FER acc."] if labelled else []
    head += ["routed to camera model"] if routed else []
    lines = ["| " + " | ".join(head) + " |", "|---|---:|---|" + "---:|" * (len(head) - 3)]
    for rep in reports:
        base = rep["rows"][0]  # bicubic
        found = f"{100 * rep['landmarks_found_lr'] / rep['faces']:.0f} %"
        for r in rep["rows"]:
            ratio = r["agreement"] / base["agreement"] if base["agreement"] else float("nan")
            cells = [rep["degradation"], found, r["model"], f"{r['psnr']:.2f}", f"{r['psnr'] - base['psnr']:+.2f}",
                     f"{r['ssim']:.4f}", f"{r['agreement']:.3f}", f"{ratio:.2f}", f"{r['kl']:.4f}"]
            if labelled:
                cells.append("—" if r.get("fer_accuracy") is None else f"{r['fer_accuracy']:.3f}")
            if routed:
                cells.append("—" if r.get("routed_to_camera") is None else f"{100 * r['routed_to_camera']:.0f} %")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

