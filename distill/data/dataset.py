"""Face super-resolution pairs with landmarks, prepared once and held in memory.

``prepare_faces`` applies the evaluation protocol (``edge_affectsr.protocol``) to every readable face,
renders the LR input through the camera degradation model if asked (``edge_affectsr/runtime/degradation.py``; then the
clean protocol LR is kept beside it, for privileged distillation), and looks up FaceMesh landmarks
on the HR face and on the bicubic upscale of each LR face (what the model gets, as on a device). 4,800 faces at 128 px
take ~240 MB, so holding them in memory keeps the training loop free of JPEG decoding.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edge_affectsr.runtime.degradation import CameraDegradation, degrade_face
from edge_affectsr.distill.data.landmarks import LandmarkCache
from edge_affectsr.distill.data.readers import FaceDataError, FaceRecord, read_image
from edge_affectsr import protocol
from edge_affectsr.landmark_graph import subset_nodes

log = logging.getLogger(__name__)


@dataclass
class FaceArrays:
    """Aligned arrays for n faces (uint8 images, float32 normalised landmarks, bool found flags).

    With a camera degradation, ``lr`` is the degraded input and ``clean`` holds the same faces under
    the plain protocol (``clean.lr``, ``clean.lm_lr``, ``clean.found_lr``); without one ``clean`` is None.
    """

    names: list[str]
    hr: np.ndarray  # [n, 128, 128, 3]
    lr: np.ndarray  # [n, 128 / scale, 128 / scale, 3]
    lm_lr: np.ndarray  # [n, 478, 2] found on bicubic(LR)
    lm_hr: np.ndarray  # [n, 478, 2] found on HR
    found_lr: np.ndarray  # [n]
    found_hr: np.ndarray  # [n]
    skipped: list[str]
    clean: FaceArrays | None = None

    def __len__(self) -> int:
        return len(self.names)


def prepare_faces(
    records: list[FaceRecord],
    scale: int,
    cache: LandmarkCache | None = None,
    degradation: CameraDegradation | None = None,
    seed: int = 0,
    desc: str = "faces",
    variants: int = 1,
) -> FaceArrays:
    """Every readable face under the protocol; with ``degradation``, ``variants`` camera renderings
    of each (record ``i``'s variant ``v`` is drawn with index ``i * variants + v``, so a face keeps
    its degradation across runs and unreadable neighbours)."""
    cache = cache or LandmarkCache()
    keys = ("names", "hr", "lr", "lm_lr", "lm_hr", "found_lr", "found_hr", "lr_clean", "lm_clean", "found_clean")
    cols: dict[str, list] = {k: [] for k in keys}
    skipped: list[str] = []
    lr_size = protocol.lr_size(scale)
    for i, rec in enumerate(tqdm(records, desc=desc, unit="face", dynamic_ncols=True)):
        img = read_image(rec.path, rec.box)
        if img is None:
            skipped.append(str(rec.path))
            continue
        hr = protocol.make_hr(img)
        clean = protocol.make_lr(hr, scale)
        lm_hr, f_hr = cache.get(hr)
        lm_clean, f_clean = cache.get(protocol.bicubic_up(clean))
        for v in range(variants if degradation is not None else 1):
            lr = clean if degradation is None else degrade_face(hr, degradation, lr_size, seed, i * variants + v)
            lm_lr, f_lr = (lm_clean, f_clean) if degradation is None else cache.get(protocol.bicubic_up(lr))
            row = (rec.path.name, hr, lr, lm_lr, lm_hr, f_lr, f_hr, clean, lm_clean, f_clean)
            for key, val in zip(keys, row):
                cols[key].append(val)
    if not cols["names"]:
        raise FaceDataError(f"none of the {len(records)} images could be read")
    arrays = _arrays(cols, skipped, with_clean=degradation is not None)
    log.info(
        "%s: %d faces, %d unreadable skipped%s; FaceMesh found %d/%d on LR-upscaled, %d/%d on HR (rest: mean shape)",
        desc, len(arrays), len(skipped), f" ({', '.join(Path(s).name for s in skipped[:5])}...)" if skipped else "",
        arrays.found_lr.sum(), len(arrays), arrays.found_hr.sum(), len(arrays),
    )
    return arrays


def _arrays(cols: dict[str, list], skipped: list[str], with_clean: bool) -> FaceArrays:
    """Stack the per-face columns; the clean twin shares names, HR and HR landmarks."""
    s = {k: np.stack(v) for k, v in cols.items() if k != "names"}
    shared = dict(names=cols["names"], hr=s["hr"], lm_hr=s["lm_hr"], found_hr=s["found_hr"], skipped=skipped)
    clean = FaceArrays(**shared, lr=s["lr_clean"], lm_lr=s["lm_clean"], found_lr=s["found_clean"])
    if not with_clean:
        return clean
    return FaceArrays(**shared, lr=s["lr"], lm_lr=s["lm_lr"], found_lr=s["found_lr"], clean=clean)


def to_tensor_image(img: np.ndarray) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` -> float ``[..., 3, H, W]`` in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(img)).float().div_(255.0)
    return t.movedim(-1, -3)


def to_uint8_image(t: torch.Tensor) -> np.ndarray:
    """float ``[..., 3, H, W]`` in [0, 1] -> uint8 ``[..., H, W, 3]`` (rounded, clipped)."""
    return t.detach().clamp(0, 1).mul(255).round().byte().movedim(-3, -1).cpu().numpy()


class FaceSRDataset(torch.utils.data.Dataset):
    """Items: ``lr [3,h,w]``, ``hr [3,128,128]`` in [0, 1], ``lm_lr``/``lm_hr [N,2]``, ``found_lr``,
    plus whatever per-face tensors were put in ``extras``."""

    def __init__(self, faces: FaceArrays, subset: str = "full") -> None:
        nodes = subset_nodes(subset)
        self.lr = to_tensor_image(faces.lr)
        self.hr = to_tensor_image(faces.hr)
        self.lm_lr = torch.from_numpy(faces.lm_lr[:, nodes]).float()
        self.lm_hr = torch.from_numpy(faces.lm_hr[:, nodes]).float()
        self.found_lr = torch.from_numpy(faces.found_lr)
        self.extras: dict[str, torch.Tensor] = {}  # per-face training targets, e.g. a teacher's outputs

    def __len__(self) -> int:
        return len(self.lr)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {"lr": self.lr[i], "hr": self.hr[i], "lm_lr": self.lm_lr[i], "lm_hr": self.lm_hr[i], "found_lr": self.found_lr[i]}
        return item | {k: v[i] for k, v in self.extras.items()}
