"""A built-in face that needs no dataset and no camera: the astronaut photograph that ships with
scikit-image (Eileen Collins, NASA, public domain), cropped the way CelebA faces are aligned."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from edge_affectsr.assets import cache_dir

# Square around the face, sized so the FaceMesh landmarks span the same fraction of the crop as on
# CelebA's aligned faces (measured with distill/data/landmarks.py).
ASTRONAUT_BOX = (128, 7, 318, 197)


def builtin_face_dir() -> Path:
    """A folder holding the built-in face as PNG (written once into the cache)."""
    from skimage import data

    folder = cache_dir() / "builtin-faces"
    target = folder / "astronaut.png"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / ".astronaut.png.tmp"
        Image.fromarray(data.astronaut()).crop(ASTRONAUT_BOX).save(tmp, format="PNG")
        tmp.replace(target)
    return folder
