"""Readers for face collections on disk; each yields the image paths (and labels) of one set.

Layouts understood: one image file, a plain folder (searched recursively; this covers FFHQ's
numbered sub-folders), CelebA (``img_align_celeba/`` with ``list_eval_partition.txt`` where
present), Helen (images with ``annotation/*.txt`` landmark files, cropped to the annotated face),
and class-per-folder expression sets. Unreadable images are skipped by ``read_image`` and counted
by the caller.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edge_affectsr.errors import UserError

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
CELEBA_SPLITS = {"train": "0", "val": "1", "test": "2"}


class FaceDataError(UserError, FileNotFoundError):
    """A folder that holds no usable faces."""


@dataclass(frozen=True)
class FaceRecord:
    path: Path
    label: str | None = None
    box: tuple[int, int, int, int] | None = None  # left, top, right, bottom; None = whole image


def find_images(root: Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise FaceDataError(f"no such folder of faces: {root}")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_image(path: Path, box: tuple[int, int, int, int] | None = None) -> Image.Image | None:
    """The decoded RGB image, or None (logged) when the file is unreadable or corrupt."""
    try:
        with Image.open(path) as im:
            im.load()
            img = im.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as e:
        log.warning("skipping unreadable image %s: %s", path, e)
        return None
    return img.crop(box) if box else img


def _celeba(root: Path, split: str | None) -> list[FaceRecord]:
    img_dir = root / "img_align_celeba"
    part = root / "list_eval_partition.txt"
    if split is None or not part.exists():
        return [FaceRecord(p) for p in find_images(img_dir)]
    if split not in CELEBA_SPLITS:
        raise FaceDataError(f"CelebA split must be one of {sorted(CELEBA_SPLITS)}, got {split!r}")
    names = [ln.split()[0] for ln in part.read_text().splitlines() if ln.split()[1:] == [CELEBA_SPLITS[split]]]
    return [FaceRecord(img_dir / n) for n in names if (img_dir / n).exists()]


def _helen_box(annotation: Path, margin: float = 0.25) -> tuple[str, tuple[int, int, int, int]]:
    """Helen annotation: first line the image name, then one ``x , y`` per landmark."""
    lines = annotation.read_text().splitlines()
    pts = np.array([[float(v) for v in ln.split(",")] for ln in lines[1:] if "," in ln])
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    box = (int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))
    return lines[0].strip(), box


def _helen(root: Path) -> list[FaceRecord]:
    by_stem = {p.stem: p for p in find_images(root)}
    records = []
    for ann in sorted((root / "annotation").glob("*.txt")):
        name, box = _helen_box(ann)
        if name in by_stem:
            records.append(FaceRecord(by_stem[name], box=box))
    return records


def face_set(root: Path, split: str | None = None) -> list[FaceRecord]:
    """All faces under ``root``, whatever the layout (see the module docstring)."""
    root = Path(root)
    if root.is_file():  # one face photo (eval's default: the built-in face)
        return [FaceRecord(root)]
    if (root / "img_align_celeba").is_dir():
        records = _celeba(root, split)
    elif (root / "annotation").is_dir():
        records = _helen(root)
    else:
        records = [FaceRecord(p) for p in find_images(root)]
    if not records:
        raise FaceDataError(f"no face images found under {root}")
    return records


# Folder names of expression sets (FER2013's classes, CK+/AffectNet spellings): a folder whose
# sub-folders are all among these is read as labelled, class per folder.
EXPRESSION_FOLDERS = frozenset({"angry", "anger", "contempt", "disgust", "fear", "happy", "happiness", "neutral",
                                "sad", "sadness", "surprise"})


def is_expression_set(root: Path) -> bool:
    """Whether ``root`` is a class-per-folder expression set (every sub-folder an expression's name)."""
    root = Path(root)
    subdirs = [p.name for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    return bool(subdirs) and all(name.lower() in EXPRESSION_FOLDERS for name in subdirs)


def expression_set(root: Path) -> list[FaceRecord]:
    """Class-per-folder expression data: ``root/<class>/*.jpg`` with the folder name as label."""
    root = Path(root)
    records = [FaceRecord(p, label=p.relative_to(root).parts[0]) for p in find_images(root) if p.parent != root]
    if not records:
        raise FaceDataError(f"no class-per-folder images found under {root}")
    return records
