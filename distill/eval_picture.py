"""The picture ``eval --grid`` draws: a row per face, LR (nearest, enlarged) | bicubic | models | HR,
each tile captioned with the critic's expression; with several ``--degradation`` cells, rows per cell.

Why marks: the point of an emotion-aware upscaler is that it does not change the expression, so a
tile whose expression differs from the critic's reading of HR gets a red border and a red caption;
those are the faces to look at first (the JSON names their files, :mod:`edge_affectsr.distill.evaluate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from edge_affectsr.distill.data.dataset import FaceArrays

CAPTION = 14  # px under each tile
BORDER = 3  # px of the red mark
CHANGED = (220, 30, 30)
LEGEND = "red: expression differs from HR's"
FILE_CHARS = 21  # of a file name fit under a 128 px tile


@dataclass(frozen=True)
class Tile:
    image: np.ndarray  # RGB uint8 [size, size, 3]
    caption: str
    changed: bool = False  # the expression differs from HR's: marked


def face_row(faces: FaceArrays, images: dict, hr_labels: np.ndarray, class_names, i: int, lr_caption: str = "") -> list[Tile]:
    """Face ``i``: its LR, every predictor's output (``images``: name -> (SR [n, H, W, 3], labels [n]))
    and HR, each with its expression; outputs read otherwise than HR are marked."""
    size = faces.hr.shape[1]
    lr = np.asarray(Image.fromarray(faces.lr[i]).resize((size, size), Image.NEAREST))
    tiles = [Tile(lr, lr_caption)]
    tiles += [Tile(sr[i], class_names[labels[i]], labels[i] != hr_labels[i]) for sr, labels in images.values()]
    return tiles + [Tile(faces.hr[i], class_names[hr_labels[i]])]


def picks(n: int, rows: int) -> np.ndarray:
    """``rows`` face indices spread evenly over ``n`` faces (all of them when fewer)."""
    return np.linspace(0, n - 1, min(rows, n)).astype(int)


def draw_grid(faces: FaceArrays, images: dict, hr_labels: np.ndarray, class_names, out: Path, rows: int = 6,
              files: list[str] | None = None) -> None:
    """One cell's picture: ``rows`` faces spread over the set, each LR tile captioned with its file
    (``files``, as the JSON names them; the end of a long name)."""
    grid = [face_row(faces, images, hr_labels, class_names, i, files[i][-FILE_CHARS:] if files else "")
            for i in picks(len(faces), rows)]
    draw(grid, ["LR", *images, "HR"], out)


def draw_cells(results: list[tuple], out: Path, faces_per_cell: int = 2) -> None:
    """Several cells' picture: ``faces_per_cell`` faces of each, the cell named on its LR tiles."""
    first = results[0][1]
    chosen = picks(len(first), faces_per_cell)
    grid = [face_row(faces, images, hr_labels, class_names, i, report["degradation"])
            for report, faces, images, (hr_labels, class_names) in results for i in chosen]
    draw(grid, ["LR", *results[0][2], "HR"], out)


def draw(rows: list[list[Tile]], columns: list[str], out: Path) -> None:
    """The tiles under a header of column names, with the legend of the marks at the bottom."""
    size = rows[0][0].image.shape[0]
    picture = Image.new("RGB", (size * len(columns), CAPTION + len(rows) * (size + CAPTION) + CAPTION), "white")
    pen, font = ImageDraw.Draw(picture), ImageFont.load_default()
    for c, name in enumerate(columns):
        pen.text((c * size + 3, 1), name, fill="black", font=font)
    for r, row in enumerate(rows):
        y = CAPTION + r * (size + CAPTION)
        for c, tile in enumerate(row):
            x = c * size
            picture.paste(Image.fromarray(tile.image), (x, y))
            if tile.changed:
                pen.rectangle((x, y, x + size - 1, y + size - 1), outline=CHANGED, width=BORDER)
            pen.text((x + 3, y + size), tile.caption, fill=CHANGED if tile.changed else "black", font=font)
    pen.text((3, picture.height - CAPTION + 1), LEGEND, fill=CHANGED, font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(out)
