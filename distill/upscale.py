"""``edge-affectsr upscale --source IN_DIR --out OUT_DIR --model M``: LR face images -> SR PNGs with the same names,
landmarks computed on the way, so anyone can score the outputs with their own tools."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from edge_affectsr import protocol
from edge_affectsr.distill.data.landmarks import LandmarkCache
from edge_affectsr.distill.data.readers import find_images, read_image
from edge_affectsr.errors import UserError
from edge_affectsr.runtime.backend import load_model

log = logging.getLogger(__name__)


def plan_outputs(inputs: list[Path], in_dir: Path, out_dir: Path, overwrite: bool) -> list[Path]:
    """Output path per input (sub-folders kept, suffix .png); refuses to replace files silently."""
    outs = [(out_dir / p.relative_to(in_dir)).with_suffix(".png") for p in inputs]
    if len(set(outs)) != len(outs):
        raise UserError("two inputs map to the same output name (e.g. a.jpg and a.png); rename one")
    existing = [o for o in outs if o.exists()]
    if existing and not overwrite:
        raise UserError(f"{len(existing)} output file(s) already exist, e.g. {existing[0]}; pass --overwrite to replace them")
    return outs


def save_png(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(img).save(tmp, format="PNG")
    tmp.replace(path)


def upscale_folder(in_dir: Path, out_dir: Path, model: str, overwrite: bool = False) -> dict:
    inputs = find_images(in_dir)
    if not inputs:
        raise UserError(f"no images in {in_dir}")
    outs = plan_outputs(inputs, Path(in_dir), Path(out_dir), overwrite)
    pred, cache = load_model(model), LandmarkCache()
    done = unreadable = not_square = wrong_size = no_landmarks = 0
    for src, dst in tqdm(list(zip(inputs, outs)), desc="upscale", unit="face", dynamic_ncols=True):
        img = read_image(src)
        if img is None:
            unreadable += 1
            continue
        lr = np.asarray(img)
        if lr.shape[0] != lr.shape[1]:
            log.warning("skipping %s: %dx%d is not a square face crop", src, lr.shape[1], lr.shape[0])
            not_square += 1
            continue
        if pred.lr_size not in (None, lr.shape[0]):
            log.warning("skipping %s: %d px, but %s takes %d px LR faces", src, lr.shape[0], pred.name, pred.lr_size)
            wrong_size += 1
            continue
        lm, found = cache.get(protocol.bicubic_up(lr, lr.shape[0] * pred.scale))
        no_landmarks += not found
        save_png(pred(lr[None], lm[None], np.array([found]))[0], dst)
        done += 1
    summary = {"upscaled": done, "unreadable": unreadable, "not_square": not_square, "wrong_size": wrong_size,
               "mean_shape_landmarks": no_landmarks}
    log.info("upscale: %s", ", ".join(f"{k} {v}" for k, v in summary.items()))
    return summary
