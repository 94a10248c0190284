"""One SR backend behind one call, whatever the model is (in the manner of Ultralytics' AutoBackend).

``load_model(ref)`` opens a shipped name (``edge_affectsr/models.py``), a ``.pt`` checkpoint, an
``.onnx`` export, a ``.tflite`` file, a bundle folder or ``bicubic``, and every backend is called the
same way::

    sr = backend(lr, landmarks, found)
    # lr uint8 [B, h, w, 3]; landmarks float [B, 478, 2], normalised to the LR crop (all of
    # FaceMesh's points: each backend picks its model's subset); found bool [B]
    # -> sr uint8 [B, h * scale, w * scale, 3]

with ``name``, ``scale``, ``lr_size`` (None: any LR size), ``params`` and ``macs`` (None when not
recoverable, e.g. from a converted graph). So ``eval``, ``upscale``, ``convert``'s verification and
the device score and run exactly the same thing.

Why entry points: the runtime layer (like the core) imports no stage, yet ``.pt`` needs torch
(``edge_affectsr.distill``) and ``.onnx`` onnxruntime (``edge_affectsr.convert``). Those stages
register their backend class under the ``edge_affectsr.backends`` entry-point group
(pyproject.toml), named by file suffix; the class is built as ``cls(path, name=..., **opts)``.
When its stage's dependencies are missing, the error names the extra to install (the stage's
name: ``[distill]``, ``[convert]``).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from edge_affectsr import landmark_graph, protocol
from edge_affectsr.bundle import BundleError, Manifest, verify_bundle
from edge_affectsr.errors import UserError
from edge_affectsr.models import resolve_model
from edge_affectsr.runtime.interpreter import RUNTIMES, load_interpreter
from edge_affectsr.runtime.routing import RoutedBackend
from edge_affectsr.runtime.sr import TFLiteSR

BACKEND_GROUP = "edge_affectsr.backends"
BICUBIC = "bicubic"


class SRBackend(Protocol):
    """What :func:`load_model` returns (see the module docstring for the call)."""

    name: str
    scale: int
    lr_size: int | None
    params: int | None
    macs: int | None

    def __call__(self, lr: np.ndarray, landmarks: np.ndarray, found: np.ndarray) -> np.ndarray: ...


class BicubicBackend:
    """The protocol's bicubic upscale (Pillow): the baseline every table starts with."""

    def __init__(self, scale: int = 4) -> None:
        self.name, self.scale = BICUBIC, scale
        self.lr_size = self.params = self.macs = None  # any LR size

    def __call__(self, lr: np.ndarray, landmarks: np.ndarray, found: np.ndarray) -> np.ndarray:
        return np.stack([protocol.resize(x, x.shape[0] * self.scale) for x in lr])


class TFLiteBackend:
    """A converted SR model (a ``.tflite`` file or a bundle's ``sr_int8.tflite``), all faces in one call.

    ``runner`` is the per-face model (subset landmarks in); ``nodes`` its landmark subset as
    indices into the 478-point mesh.
    """

    def __init__(self, runner: TFLiteSR, nodes: np.ndarray, name: str) -> None:
        self.runner, self.nodes, self.name = runner, np.asarray(nodes), name
        self.scale = runner.scale
        self.lr_size = runner.lr_size  # a converted model takes exactly this LR size
        self.params = self.macs = None  # not recoverable from a converted graph

    def __call__(self, lr: np.ndarray, landmarks: np.ndarray, found: np.ndarray) -> np.ndarray:
        return self.runner.batch(lr, landmarks[:, self.nodes])


def subset_for(num_landmarks: int, path: Path) -> str:
    """The landmark subset whose node count matches a bare model's landmark input."""
    for subset in landmark_graph.SUBSETS:
        if len(landmark_graph.subset_nodes(subset)) == num_landmarks:
            return subset
    raise UserError(f"{path}: its landmark input has {num_landmarks} nodes, which matches no landmark subset "
                    f"({', '.join(landmark_graph.SUBSETS)})")


def open_tflite(path: Path, name: str, runtime: str | None = None, threads: int = 2) -> TFLiteBackend:
    """A ``.tflite`` file or a bundle folder (its verified ``sr_int8``) on the CPU of ``runtime``
    (None: the first installed). The device builds its :class:`TFLiteBackend` on its configured
    delegate instead (``edge_affectsr.runtime.bundle_models``)."""
    runtimes = [runtime] if runtime else list(RUNTIMES)

    def open_runner(file: Path) -> TFLiteSR:
        return TFLiteSR(load_interpreter(file, delegate_order=["cpu"], threads=threads, runtimes=runtimes))

    if not path.is_dir():
        runner = open_runner(path)
        return TFLiteBackend(runner, landmark_graph.subset_nodes(subset_for(runner.num_landmarks, path)), name)
    manifest = verify_bundle(path)
    nodes = landmark_graph.subset_nodes(manifest.landmarks.subset)
    return with_routing(TFLiteBackend(open_runner(path / manifest.models["sr_int8"].file), nodes, name),
                        manifest, path, open_runner)


def with_routing(primary: TFLiteBackend, manifest: Manifest, bundle: Path,
                 open_runner: Callable[[Path], TFLiteSR]) -> TFLiteBackend | RoutedBackend:
    """``primary`` (the bundle's ``sr_int8``) alone, or, when the manifest has a ``routing`` section,
    routed with the bundle's ``sr_clean_int8`` opened by ``open_runner``."""
    if manifest.routing is None:
        return primary
    entry = manifest.models.get("sr_clean_int8")
    if entry is None:
        raise BundleError(f"{bundle}: the manifest has a routing section but no sr_clean_int8 model")
    clean = TFLiteBackend(open_runner(bundle / entry.file), primary.nodes, f"{primary.name} clean")
    return RoutedBackend(primary, clean, manifest.routing)


def load_model(ref: str | Path, **opts) -> SRBackend:
    """An :class:`SRBackend` for a shipped name, a path (``.pt``, ``.onnx``, ``.tflite``, a bundle
    folder) or ``bicubic``.

    ``opts``: ``name`` (the table's label; default: the shipped name, or ``folder/stem`` for a
    path, ``<bundle> (int8)`` for a bundle); ``bicubic``: ``scale``; ``.tflite`` and bundles:
    ``runtime``, ``threads``; ``.onnx``: ``threads``.
    """
    if str(ref) == BICUBIC:
        return BicubicBackend(**opts)
    path = resolve_model(ref)
    name = opts.pop("name", None) or _display_name(ref, path)
    if path.is_dir() or path.suffix == ".tflite":
        return open_tflite(path, name, **opts)
    return _backend_class(path)(path, name=name, **opts)


def _display_name(ref: str | Path, path: Path) -> str:
    if path.is_dir():
        return f"{path.name} (int8)"
    return f"{path.parent.name}/{path.stem}" if Path(ref).exists() else str(ref)


def _backend_class(path: Path) -> type:
    """The backend class registered for ``path``'s suffix; UserError for an unsupported suffix or
    when the registering stage's dependencies are not installed."""
    kind = path.suffix.lstrip(".")
    registered = {ep.name: ep for ep in entry_points(group=BACKEND_GROUP)}
    if kind not in registered:
        kinds = ", ".join(f".{k}" for k in sorted({*registered, "tflite"}))
        raise UserError(f"{path}: unsupported model type (expected {kinds}, a bundle folder or {BICUBIC})")
    ep = registered[kind]
    try:
        return ep.load()
    except ImportError as e:
        extra = ep.module.split(".")[1]  # edge_affectsr.<stage>.<module>: the stage names the extra
        raise UserError(f"{path}: a .{kind} model needs the [{extra}] extra "
                        f"(pip install -e '.[{extra}]'): {e}") from None
