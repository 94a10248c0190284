"""The one built-in face: needs no dataset and no camera, and ships in the package.

``edge_affectsr/data/astronaut_face.jpg`` is the face of scikit-image's astronaut photograph
(Eileen Collins, NASA, public domain), cropped to the square ``(128, 7, 318, 197)`` of the
512x512 original — sized so the FaceMesh landmarks span the same fraction of the crop as on
CelebA's aligned faces — and saved as a 190x190 JPEG (scikit-image is not needed to use it).
``eval`` scores it when no ``--data`` is given; the device's built-in clip pastes it, small and
moving, into synthetic frames.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image

from edge_affectsr.errors import UserError

FACE_PATH = Path(__file__).parent / "data" / "astronaut_face.jpg"


@functools.lru_cache(maxsize=1)
def builtin_face() -> np.ndarray:
    """The shipped face, RGB uint8 ``[190, 190, 3]``; read-only, as every caller shares it."""
    try:
        with Image.open(FACE_PATH) as im:
            face = np.array(im.convert("RGB"))
    except OSError as e:
        raise UserError(f"the built-in face {FACE_PATH} is missing or unreadable ({e}): "
                        "reinstall edge-affectsr") from None
    face.flags.writeable = False
    return face
