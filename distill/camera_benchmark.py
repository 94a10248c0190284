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

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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
    bicubic's, KL, FER accuracy where the set is labelled; and how often FaceMesh found the LR face."""
    labelled = any(r.get("hr_fer_accuracy") is not None for r in reports)
    head = ["cell", "FaceMesh found", "model", "PSNR (dB)", "Δ bicubic (dB)", "SSIM", "agreement", "× bicubic", "KL(HR‖SR)"]
    head += ["FER acc."] if labelled else []
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
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def draw_cells(results: list[tuple], out: Path, faces_per_cell: int = 2) -> None:
    """One row per (cell, face): LR (nearest, enlarged) | bicubic | models | HR, the cell named on the LR tile
    and the critic's expression under each tile."""
    first_faces = results[0][1]
    size, caption = first_faces.hr.shape[1], 14
    picks = np.linspace(0, len(first_faces) - 1, min(faces_per_cell, len(first_faces))).astype(int)
    names = list(results[0][2])
    cols = ["LR"] + names + ["HR"]
    n_rows = len(results) * len(picks)
    grid = Image.new("RGB", (size * len(cols), caption + n_rows * (size + caption)), "white")
    draw, font = ImageDraw.Draw(grid), ImageFont.load_default()
    for c, name in enumerate(cols):
        draw.text((c * size + 3, 1), name, fill="black", font=font)
    row = 0
    for report, faces, images, (hr_labels, class_names) in results:
        for i in picks:
            y = caption + row * (size + caption)
            tiles = [(Image.fromarray(faces.lr[i]).resize((size, size), Image.NEAREST), report["degradation"])]
            tiles += [(Image.fromarray(images[n][0][i]), class_names[images[n][1][i]]) for n in names]
            tiles.append((Image.fromarray(faces.hr[i]), class_names[hr_labels[i]]))
            for c, (tile, label) in enumerate(tiles):
                grid.paste(tile, (c * size, y))
                draw.text((c * size + 3, y + size), label, fill="black", font=font)
            row += 1
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
