"""The Python API: ``FaceUpscaler(model)(image)`` -> one :class:`UpscaledFace` per face found.

Why a façade over the camera's own pipeline (:class:`~edge_affectsr.device.inference.pipeline.Pipeline`)
rather than a second face path: a photo and a camera frame then go through the very same detector,
FaceMesh, aligner, SR model and expression guard, so what a script sees is what the camera reports.
What differs is only what a camera does to keep up with a stream, and a still image does not need:
each image gets a fresh pipeline (no tracks, no smoothing across images), the detector scans every
tile of its schedule (not a few per frame in rotation), no per-frame face budget, no upper face size.
So any image size works as is: a 190 px face photo, a 640x480 frame, a 4000x3000 group photo (its
small faces cost one detector call per tile, about 1 ms each).

``model`` is a bundle (a shipped name such as ``bundle-x4``, or a folder made by ``convert``): its
int8 SR model, critic, BlazeFace and FaceMesh run on the TFLite runtime, with no torch. Any other
model :func:`~edge_affectsr.runtime.backend.load_model` opens (``student-x4``, a ``.pt``, ``.onnx`` or
``.tflite`` file, ``bicubic``) does the SR step while the face models come from ``face_models`` (the
shipped bundle by default); a ``.pt`` model needs the ``[distill]`` extra (torch).

Images: a path, a PIL image, or a uint8 array ``H x W x 3`` in **RGB** (PIL's and matplotlib's order;
``bgr=True`` for OpenCV frames), grey and RGBA converted. Every image in the results is RGB uint8.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Sequence, Union, overload

import cv2
import numpy as np
from PIL import Image, ImageOps

from edge_affectsr.device.capture.frame import Frame
from edge_affectsr.device.inference.budget import BudgetConfig
from edge_affectsr.device.inference.guard import ExpressionGuard, Verdict, canonical_detection
from edge_affectsr.device.inference.pipeline import EXTRA_COUNTERS, FaceResult, Pipeline, sr_routes
from edge_affectsr.device.reporting.events import Guard
from edge_affectsr.device.reporting.stats import Stats
from edge_affectsr.device.service.settings import DeviceConfig, load_device_config
from edge_affectsr import landmark_graph
from edge_affectsr.errors import UserError
from edge_affectsr.models import resolve_model
from edge_affectsr.protocol import HR_SIZE, bicubic_up, centre_square, resize
from edge_affectsr.runtime.backend import BICUBIC, SRBackend, load_model
from edge_affectsr.runtime.bundle_models import SHIPPED_BUNDLE, LoadedBundle, load_bundle

ImageInput = Union[str, "os.PathLike[str]", Image.Image, np.ndarray]
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in the image's pixels
NO_UPPER_LIMIT = 1e9  # pipeline.max_face_px for stills: a close-up photo is a face like any other


@dataclass(frozen=True)
class UpscaledFace:
    """One face: where it was, what the model was given and gave back, and what expression it shows.

    ``box`` the detection in image pixels (None for a crop passed to :meth:`FaceUpscaler.upscale_crop`);
    ``lr`` the aligned LR crop the model took (RGB uint8 ``[s, s, 3]``, 32 px for ``bundle-x4``);
    ``sr`` the model's output (``[s * scale, s * scale, 3]``; the bicubic upscale instead when the guard
    fell back, ``guard.fallback``, which only ``guard.fallback_to_bicubic: true`` allows);
    ``aligned`` the 128 px aligned crop of the image ``lr`` was shrunk from (None for a crop);
    ``expression`` the critic's top class on ``sr`` and ``probabilities`` its distribution;
    ``preserved`` whether the expression guard's verdict is ``preserved`` and ``guard`` its full record
    (``verdict``: ``preserved``, ``changed`` or ``unverified``; agreement with the bicubic upscale, KL,
    landmark error); ``landmarks``: ``facemesh``, or ``keypoints`` when FaceMesh
    rejected the face and the mean face shape stood in.
    """

    box: Box | None
    lr: np.ndarray
    sr: np.ndarray
    aligned: np.ndarray | None
    expression: str
    probabilities: dict[str, float]
    preserved: bool
    guard: Guard
    landmarks: Literal["facemesh", "keypoints"]

    def to_dict(self) -> dict[str, Any]:
        """The face without its images, as plain JSON-ready values."""
        return {"box": None if self.box is None else [round(v, 1) for v in self.box],
                "expression": self.expression, "probabilities": self.probabilities, "preserved": self.preserved,
                "guard": self.guard.to_dict(), "landmarks": self.landmarks}


class FaceUpscaler:
    """``up(image)`` -> ``list[UpscaledFace]``; ``up([image, ...])`` -> one such list per image;
    ``up.upscale_crop(lr)`` for a face already cropped. Models are loaded once, here; use one
    instance per thread (its interpreters are not thread-safe).

    ``config``: a device config (a YAML/TOML file or a :class:`DeviceConfig`) for the detector,
    FaceMesh, aligner, guard and interpreter settings; its camera-only parts (capture, tracking,
    budget, reporting) are not used.
    """

    def __init__(self, model: str | Path = SHIPPED_BUNDLE, *, face_models: str | Path = SHIPPED_BUNDLE,
                 config: DeviceConfig | str | Path | None = None) -> None:
        cfg = config if isinstance(config, DeviceConfig) else load_device_config(None if config is None else Path(config))
        self.config = cfg
        path = None if str(model) == BICUBIC else resolve_model(model)
        is_bundle = path is not None and path.is_dir()
        self.bundle = _still_bundle(path if is_bundle else resolve_model(face_models), cfg)
        if not is_bundle:
            self.bundle = _with_sr(self.bundle, load_model(model))
        self.classes: tuple[str, ...] = tuple(self.bundle.critic.classes)
        self._crop_guard = ExpressionGuard(self.bundle.critic, self.bundle.landmarker, cfg.guard,
                                           self.bundle.manifest.guard_reference)

    @property
    def name(self) -> str:
        """The SR model's name (``bundle-x4 (int8)``, ``student-x4``, ...)."""
        return self.bundle.sr.name

    @property
    def scale(self) -> int:
        return int(self.bundle.sr.scale)

    @property
    def lr_size(self) -> int:
        """The side of the LR crop the model takes, px."""
        return int(self.bundle.sr.lr_size)

    @overload
    def __call__(self, images: ImageInput, *, bgr: bool = False) -> list[UpscaledFace]: ...

    @overload
    def __call__(self, images: Sequence[ImageInput], *, bgr: bool = False) -> list[list[UpscaledFace]]: ...

    def __call__(self, images: ImageInput | Sequence[ImageInput], *,
                 bgr: bool = False) -> list[UpscaledFace] | list[list[UpscaledFace]]:
        """Every face of one image, largest first; or, for a list or tuple of images, one such list each."""
        if isinstance(images, (list, tuple)):
            return [self.faces(image, bgr=bgr) for image in images]
        return self.faces(images, bgr=bgr)

    def faces(self, image: ImageInput, *, bgr: bool = False) -> list[UpscaledFace]:
        """Every face of one image that could be upscaled (too small ones are left out), largest first."""
        frame = _as_bgr(image, bgr)
        cfg = self.config
        pipeline = Pipeline(self.bundle, cfg.pipeline.model_copy(update={"report": "frame", "max_face_px": NO_UPPER_LIMIT}),
                            cfg.guard, cfg.align, cfg.tracker, cfg.roi.model_copy(update={"enabled": False}),
                            stats=Stats(extra_counters=EXTRA_COUNTERS), budget=BudgetConfig(max_faces=None),
                            smoothing=cfg.smoothing, summaries=cfg.summaries)
        result = pipeline.process(Frame(0, 0.0, frame))
        if result.error:
            raise UserError(f"not an image: {result.error}")
        faces = [self._from_pipeline(face) for face in result.faces]
        return sorted(faces, key=lambda f: -_area(f.box))

    def upscale_crop(self, lr: ImageInput, *, bgr: bool = False) -> UpscaledFace:
        """One face crop (roughly aligned as the training faces are: the face about 60 % of the crop,
        eyes level), centre-squared and resized to :attr:`lr_size` with the protocol's bicubic filter
        when it is not that size already; landmarks from FaceMesh on its bicubic upscale, as in
        training (the mean face shape when FaceMesh finds no face)."""
        rgb = cv2.cvtColor(_as_bgr(lr, bgr), cv2.COLOR_BGR2RGB)
        if rgb.shape[:2] != (self.lr_size, self.lr_size):
            rgb = resize(np.asarray(centre_square(Image.fromarray(rgb))), self.lr_size)
        landmarks, found = self._crop_landmarks(rgb)
        sr = self.bundle.sr(rgb[None], landmarks[None], np.array([found]))[0]
        camera = sr_routes(self.bundle.sr, 1)[0] == "camera"  # judged as the pipeline judges a routed face
        return self._face(None, rgb, None, self._crop_guard(rgb, sr, landmarks, found, camera), found)

    def _crop_landmarks(self, lr_rgb: np.ndarray) -> tuple[np.ndarray, bool]:
        """``[478, 2]`` in [0, 1] of the crop and whether FaceMesh found them (else the mean shape)."""
        up = cv2.cvtColor(bicubic_up(lr_rgb), cv2.COLOR_RGB2BGR)
        found = self.bundle.landmarker(up, canonical_detection(HR_SIZE))
        if not self.bundle.landmarker.found(found):
            return landmark_graph.mean_shape().astype(np.float32), False
        return (found.points / HR_SIZE).astype(np.float32), True

    def _from_pipeline(self, face: FaceResult) -> UpscaledFace:
        box = tuple(float(v) for v in face.event.bbox)
        return self._face(box, face.aligned.lr, face.aligned.hr, face.verdict, face.aligned.found)

    def _face(self, box: Box | None, lr: np.ndarray, aligned: np.ndarray | None, verdict: Verdict,
              found: bool) -> UpscaledFace:
        """The result; ``sr`` and the expression are those of the image the guard reports."""
        p = verdict.probabilities
        return UpscaledFace(box=box, lr=lr, sr=verdict.image, aligned=aligned, expression=self.classes[int(np.argmax(p))],
                            probabilities={c: round(float(v), 5) for c, v in zip(self.classes, p)},
                            preserved=verdict.guard.preserved, guard=verdict.guard,
                            landmarks="facemesh" if found else "keypoints")


def _still_bundle(path: Path, cfg: DeviceConfig) -> LoadedBundle:
    """The bundle's models set up for stills: the detector scans every tile of its schedule per image."""
    detector = cfg.detector.model_copy(update={"tiles_per_call": None, "calls_per_frame": None})
    return load_bundle(path, cfg.interpreter, detector, cfg.landmarks, cfg.bundle.self_test, cfg.trust)


def _with_sr(bundle: LoadedBundle, sr: SRBackend) -> LoadedBundle:
    """``bundle`` with another SR model; one that takes any LR size is given the bundle's (the aligner
    makes one size)."""
    if HR_SIZE % sr.scale or HR_SIZE // sr.scale != bundle.sr.lr_size:
        raise UserError(f"{sr.name} upscales x{sr.scale}; the face models of {bundle.path} make "
                        f"{bundle.sr.lr_size} px crops for x{bundle.sr.scale}")
    if sr.lr_size is None:
        sr.lr_size = bundle.sr.lr_size
    elif sr.lr_size != bundle.sr.lr_size:
        raise UserError(f"{sr.name} takes {sr.lr_size} px crops; the face path makes {bundle.sr.lr_size} px ones")
    return replace(bundle, sr=sr)


def _as_bgr(image: ImageInput, bgr: bool) -> np.ndarray:
    """Any accepted image -> BGR uint8 ``H x W x 3`` (what the pipeline and OpenCV take)."""
    if isinstance(image, (str, os.PathLike)):
        try:
            with Image.open(image) as im:
                image = ImageOps.exif_transpose(im).convert("RGB")
        except OSError as e:
            raise UserError(f"{image}: not a readable image ({e})") from None
    if isinstance(image, Image.Image):
        return cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise UserError(f"expected a path, a PIL image or a uint8 H x W x 3 array, got {_describe(image)}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] not in (3, 4):
        raise UserError(f"expected 3 (RGB) or 4 (RGBA) channels, got an array of shape {image.shape}")
    codes = {(3, False): cv2.COLOR_RGB2BGR, (4, False): cv2.COLOR_RGBA2BGR, (4, True): cv2.COLOR_BGRA2BGR}
    code = codes.get((image.shape[2], bgr))
    return np.ascontiguousarray(image) if code is None else cv2.cvtColor(image, code)


def _describe(x: object) -> str:
    return f"an array of dtype {x.dtype} and shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__


def _area(box: Box | None) -> float:
    return 0.0 if box is None else (box[2] - box[0]) * (box[3] - box[1])
