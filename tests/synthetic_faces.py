"""Face photos made from the built-in face, for tests that need faces but no data set.

``../shared/data`` (CelebA, the expression set) may not be redistributed, so a fresh checkout or CI
has none. The built-in face (``edge_affectsr/data/astronaut_face.jpg``, framed like a CelebA HR
crop) is varied here — crop, mirror, a small turn, light, contrast and colour balance, each drawn
from one seeded generator — into distinct, deterministic faces that the detectors, FaceMesh, the
protocol, conversion and training all take like real photos. Tests that are *about* real data
(quality numbers on CelebA, the expression set's labels) stay gated on ``shared_data``.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from edge_affectsr.builtin_face import builtin_face

SEED = 17


def face_variant(i: int, reframe: bool = True) -> Image.Image:
    """Face ``i``: ``0`` is the built-in face itself (RGB 190x190); every other index a seeded
    variant of it (RGB, 170-190 px square) that keeps the whole face in the frame. ``reframe=False``
    leaves out the crop and the turn: the face stays framed like a CelebA HR crop (190x190)."""
    face = Image.fromarray(builtin_face())
    if i == 0:
        return face
    rng = np.random.default_rng([SEED, i])
    side = int(rng.integers(170, 191))
    x, y = (int(v) for v in rng.integers(0, 190 - side + 1, 2))
    angle = float(rng.uniform(-6, 6))
    if reframe:
        face = face.crop((x, y, x + side, y + side)).rotate(angle, Image.BICUBIC)
    if i % 2:
        face = ImageOps.mirror(face)
    face = ImageEnhance.Brightness(face).enhance(float(rng.uniform(0.8, 1.2)))
    face = ImageEnhance.Contrast(face).enhance(float(rng.uniform(0.8, 1.25)))
    gains = rng.uniform(0.85, 1.15, 3)  # a white-balance shift per channel
    return Image.fromarray(np.clip(np.asarray(face, np.float32) * gains, 0, 255).astype(np.uint8))


def face_variants(n: int, start: int = 0, reframe: bool = True) -> list[Image.Image]:
    """Faces ``start .. start + n - 1`` (:func:`face_variant`)."""
    return [face_variant(i, reframe) for i in range(start, start + n)]


def write_faces(folder: Path, n: int, start: int = 0, suffix: str = ".jpg", reframe: bool = True) -> list[Path]:
    """``n`` faces saved in ``folder`` (made if missing) as ``face<i><suffix>`` (JPEG quality 95);
    returns their paths, sorted as a folder listing sorts them."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, face in enumerate(face_variants(n, start, reframe), start):
        path = folder / f"face{i:02d}{suffix}"
        face.save(path, quality=95)
        paths.append(path)
    return paths


@functools.lru_cache(maxsize=None)
def face_folder(n: int, start: int = 0, reframe: bool = True) -> Path:
    """A folder of ``n`` JPEG faces written once per test process (removed at exit); callers must
    not change it (copy it to alter files)."""
    root = Path(tempfile.mkdtemp(prefix="edge-affectsr-synthetic-faces-"))
    atexit.register(shutil.rmtree, root, True)
    write_faces(root, n, start, reframe=reframe)
    return root


def val_photos(n: int, step: int = 1, start: int = 0) -> tuple[list[Path], bool]:
    """``n`` CelebA val photos (every ``step``-th from ``start``, 178x218) where the shared data is,
    else ``n`` built-in-face variants framed like CelebA's (square, not reframed); and whether they
    are CelebA. For tests whose claim holds on any face photo framed that way but is stronger on
    many identities (detector, FaceMesh, aligner)."""
    from conftest import shared_data_dir

    files = sorted((shared_data_dir() / "celeba" / "val").glob("*.jpg"))[start::step][:n]
    if len(files) == n:
        return files, True
    return sorted(face_folder(n, reframe=False).glob("*.jpg")), False
