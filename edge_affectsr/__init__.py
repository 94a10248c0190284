"""Emotion-aware face super-resolution for edge devices.

The Python API, imported on first use so that ``import edge_affectsr`` stays light (the core imports no
stage, and a device install has no torch)::

    from edge_affectsr import FaceUpscaler
    faces = FaceUpscaler("bundle-x4")("photo.jpg")  # one UpscaledFace per face: box, lr, sr, expression, ...

``FaceUpscaler`` and ``UpscaledFace`` live in :mod:`edge_affectsr.device.upscaler` (the ``[device]``
extra), ``load_model`` (any model as an SR backend) in :mod:`edge_affectsr.runtime.backend`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_affectsr.device.upscaler import FaceUpscaler, UpscaledFace
    from edge_affectsr.runtime.backend import load_model

_LAZY = {
    "FaceUpscaler": "edge_affectsr.device.upscaler",
    "UpscaledFace": "edge_affectsr.device.upscaler",
    "load_model": "edge_affectsr.runtime.backend",
}
__all__ = ["FaceUpscaler", "UpscaledFace", "load_model", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("edge-affectsr")
    if name not in _LAZY:
        raise AttributeError(f"module 'edge_affectsr' has no attribute {name!r}")
    try:
        module = importlib.import_module(_LAZY[name])
    except ModuleNotFoundError as e:
        raise ImportError(f"edge_affectsr.{name} needs the [device] extra (pip install 'edge-affectsr[device]'): {e}") from e
    value = getattr(module, name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
