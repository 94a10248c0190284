"""Crowd clips: many real faces drifting slowly in a camera frame, with their true boxes.

Why built here and not recorded: a crowd benchmark needs ground truth for every face in every
frame (where it is, how big, which person), at exact face sizes, and the face photos may not be
redistributed. So a clip is rendered at run time from face photos (one per person, e.g. CelebA val
identities the models never saw): each photo's protocol HR crop (:func:`edge_affectsr.protocol.make_hr`)
is rendered once at the clip's size by the camera model's optics half
(:func:`~edge_affectsr.runtime.degradation.render_crop`: lens blur, resampling), pasted at its
position in each frame on a plain background, and each whole frame gets the sensor-and-encoder half
(:func:`~edge_affectsr.runtime.degradation.degrade_frame`: noise, JPEG or H.264), as
``camera-eval --small`` stages one face.

Size: ``face_px`` is the width of the face's box, in BlazeFace's box convention on aligned crops
(:data:`~edge_affectsr.runtime.align.CANONICAL_BOX`: the box is 52 % of the crop's side), so the pasted
crop's side is ``face_px / 0.521``. That box, placed with the crop, is the ground truth.

Motion without overlaps: the frame is cut into a grid of square cells 1.3 crop sides wide; each face
gets its own cell and drifts in a straight line inside it at 0.3-1.2 px per frame, bouncing off the
cell's walls, so crops never overlap and never leave the frame. Every draw comes from
``numpy.random.default_rng([seed, ...])``: a clip is the same on every run.

Why in the runtime layer: ``crowd-bench`` (device) scores the pipeline on these clips and ``convert``
calibrates and gates the int8 face detector on them; neither stage may import the other.

Matching a detection to a true face (:func:`match`, stated in every report): a detection matches a
person when the detection's centre lies inside that person's true face box and the two boxes' widths
are within a factor of 2; each person and each detection match at most once, detections taken best
score first, each to the eligible person whose box centre is nearest. Why not IoU: the true box is
BlazeFace's mean box on aligned faces, and any detector's own box convention (tighter, taller,
shifted to the forehead) would cost IoU without being a wrong detection; a centre on the face at
about the right size is what the pipeline needs to crop the face.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from edge_affectsr.builtin_face import builtin_face
from edge_affectsr.errors import UserError
from edge_affectsr.protocol import HR_SIZE, make_hr
from edge_affectsr.runtime.align import CANONICAL_BOX
from edge_affectsr.runtime.degradation import CameraDegradation, degrade_frame, parse_degradation, render_crop
from edge_affectsr.runtime.frames import BACKGROUND

BOX_FRACTION = CANONICAL_BOX[2] - CANONICAL_BOX[0]  # face box width / crop side
CELL_FACTOR = 1.3  # cell side / crop side: room to drift
SPEED_PX = (0.3, 1.2)  # drift per frame, frame px
_PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
_IDENTITY = re.compile(r"^(id\d+)_")  # CelebA files here: id<K>_<image>.jpg


@dataclass(frozen=True)
class ClipSpec:
    """One clip: frame ``size`` (width, height), face box width ``face_px``, ``faces`` people,
    ``frames`` long, ``degradation`` a preset of :data:`~edge_affectsr.runtime.degradation.PRESETS` or
    ``clean`` (plain area resampling, no noise, no codec)."""

    size: tuple[int, int]
    face_px: int
    faces: int
    frames: int
    degradation: str = "jpeg"
    seed: int = 0

    @property
    def name(self) -> str:
        return f"{self.size[0]}x{self.size[1]}_{self.face_px}px_{self.faces}faces_{self.degradation}"

    @property
    def side(self) -> int:
        """The pasted crop's side, px."""
        return max(8, round(self.face_px / BOX_FRACTION))

    def capacity(self) -> int:
        """How many faces fit: the cells of the grid."""
        cols, rows = self.grid()
        return cols * rows

    def grid(self) -> tuple[int, int]:
        cell = self.cell()
        return self.size[0] // cell, self.size[1] // cell

    def cell(self) -> int:
        return math.ceil(self.side * CELL_FACTOR)

    def camera(self) -> CameraDegradation | None:
        """The degradation model at this clip's crop size (None: clean); UserError for an unknown preset."""
        if self.degradation == "clean":
            return None
        try:
            _, cfg = parse_degradation(self.degradation)
        except ValueError as e:
            raise UserError(f"crowd clip degradation: {e}") from None
        return cfg.at_size(self.side)

    def check(self) -> None:
        """UserError when the faces do not fit or the numbers make no clip."""
        if self.faces < 1 or self.frames < 1 or self.face_px < 4:
            raise UserError(f"{self.name}: need at least 1 face, 1 frame and faces of 4 px or more")
        if self.faces > self.capacity():
            raise UserError(f"{self.name}: {self.faces} faces of {self.face_px} px do not fit without overlaps "
                            f"in {self.size[0]}x{self.size[1]} (at most {self.capacity()})")


@dataclass
class Clip:
    """A rendered clip, frames made on demand: ``crops`` float32 RGB ``[faces, side, side, 3]`` (after the
    optics), ``positions`` int ``[frames, faces, 2]`` (x, y) of each crop's top-left corner."""

    spec: ClipSpec
    crops: np.ndarray
    positions: np.ndarray

    def __len__(self) -> int:
        return self.spec.frames

    def boxes(self, index: int) -> np.ndarray:
        """Ground-truth face boxes of frame ``index``: ``[faces, 4]`` (x0, y0, x1, y1), frame px, one row per person."""
        return face_boxes(self.positions[index], self.spec.side)

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as a camera gives it: BGR uint8 ``[height, width, 3]``."""
        width, height = self.spec.size
        canvas = np.empty((height, width, 3), np.float32)
        canvas[:] = BACKGROUND[::-1]  # BGR -> RGB
        side = self.spec.side
        for crop, (x, y) in zip(self.crops, self.positions[index]):
            canvas[y:y + side, x:x + side] = crop
        cfg = self.spec.camera()
        if cfg is None:
            rgb = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
        else:
            rgb = degrade_frame(canvas, cfg, np.random.default_rng([self.spec.seed, index, 2]))
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def face_boxes(top_left: np.ndarray, side: int) -> np.ndarray:
    """Crop corners ``[n, 2]`` -> face boxes ``[n, 4]`` (the canonical box scaled to the crop)."""
    corners = np.asarray(top_left, np.float64)
    return np.concatenate([corners, corners], axis=1) + np.asarray(CANONICAL_BOX) * side


def trajectories(spec: ClipSpec) -> np.ndarray:
    """Top-left corners ``[frames, faces, 2]`` (int): each face in its own cell, drifting and bouncing."""
    spec.check()
    rng = np.random.default_rng([spec.seed, 1])
    cols, rows = spec.grid()
    cell, side = spec.cell(), spec.side
    margin = np.array([(spec.size[0] - cols * cell) // 2, (spec.size[1] - rows * cell) // 2])
    chosen = rng.permutation(cols * rows)[:spec.faces]
    lo = np.stack([chosen % cols, chosen // cols], axis=1) * cell + margin  # cell corners [faces, 2]
    room = cell - side
    start = rng.uniform(0, room, (spec.faces, 2))
    angle = rng.uniform(0, 2 * np.pi, spec.faces)
    speed = rng.uniform(*SPEED_PX, spec.faces)
    step = np.stack([np.cos(angle), np.sin(angle)], axis=1) * speed[:, None]
    travel = start[None] + np.arange(spec.frames)[:, None, None] * step[None]
    offset = room - np.abs(np.mod(travel, 2 * room) - room)  # a triangle wave: bounces between 0 and room
    return (lo[None] + np.rint(offset)).astype(np.int64)


def build_clip(spec: ClipSpec, hr_faces: list[np.ndarray]) -> Clip:
    """Render ``spec`` with the people in ``hr_faces`` (protocol HR crops, RGB ``[128, 128, 3]``; cycled
    when fewer than ``spec.faces``)."""
    if not hr_faces:
        raise UserError("a crowd clip needs at least one face photo")
    positions = trajectories(spec)
    cfg = spec.camera()
    crops = np.stack([render(hr_faces[i % len(hr_faces)], spec.side, cfg, np.random.default_rng([spec.seed, i, 3]))
                      for i in range(spec.faces)])
    return Clip(spec, crops, positions)


def render(hr: np.ndarray, side: int, cfg: CameraDegradation | None, rng: np.random.Generator) -> np.ndarray:
    """One face's crop at ``side`` px, float32 RGB: the camera's optics, or a plain area resize when clean."""
    if cfg is None:
        return cv2.resize(hr.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA)
    return render_crop(hr, cfg, rng)


def people(folder: Path | None, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` HR crops of different people: one photo per identity of a CelebA-style folder
    (``id<K>_*.jpg``; other names count as one person each), identities drawn with ``seed``. No folder:
    the built-in face (one person, for runs without data)."""
    if folder is None:
        return [np.asarray(Image.fromarray(builtin_face()).resize((HR_SIZE, HR_SIZE), Image.LANCZOS))]
    photos = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in _PHOTO_SUFFIXES and p.is_file())
    if not photos:
        raise UserError(f"{folder}: no face photos (.jpg/.png) found")
    first: dict[str, Path] = {}
    for p in photos:
        match = _IDENTITY.match(p.name)
        first.setdefault(match.group(1) if match else str(p), p)
    chosen = [list(first.values())[i] for i in np.random.default_rng([seed, 4]).permutation(len(first))[:count]]
    out = []
    for path in chosen:
        try:
            with Image.open(path) as photo:
                out.append(make_hr(photo))
        except OSError as e:
            raise UserError(f"{path}: unreadable face photo ({e})") from None
    return out


WIDTH_RATIO = 2.0
MATCH_RULE = ("a detection matches a person when its centre lies inside the person's true face box and the widths "
              "are within a factor of 2; one-to-one, best score first, nearest centre")


def match(truth: np.ndarray, boxes: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
    """For each detection ``boxes [m, 4]`` the index of the person in ``truth [n, 4]`` it matches, or -1."""
    truth, boxes = np.asarray(truth, float).reshape(-1, 4), np.asarray(boxes, float).reshape(-1, 4)
    out = np.full(len(boxes), -1)
    if not len(truth) or not len(boxes):
        return out
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = ((centres[:, None, 0] >= truth[None, :, 0]) & (centres[:, None, 0] <= truth[None, :, 2])
              & (centres[:, None, 1] >= truth[None, :, 1]) & (centres[:, None, 1] <= truth[None, :, 3]))
    ratio = (boxes[:, 2] - boxes[:, 0])[:, None] / np.maximum(truth[None, :, 2] - truth[None, :, 0], 1e-9)
    eligible = inside & (ratio <= WIDTH_RATIO) & (ratio >= 1 / WIDTH_RATIO)
    distance = np.linalg.norm(centres[:, None] - (truth[None, :, :2] + truth[None, :, 2:]) / 2, axis=2)
    taken = np.zeros(len(truth), bool)
    order = np.argsort(-np.asarray(scores)) if scores is not None else np.arange(len(boxes))
    for d in order:
        options = np.flatnonzero(eligible[d] & ~taken)
        if len(options):
            p = options[np.argmin(distance[d, options])]
            out[d], taken[p] = p, True
    return out
