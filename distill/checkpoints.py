"""Checkpoint files: written atomically, read with a clear error when they are of the wrong kind.

A checkpoint is a ``torch.save`` dict: ``format``, ``version``, ``kind`` (its registered
architecture: ``teacher`` / ``student``), ``config`` (the full training config, plus ``init``: the
checkpoint a fine-tune started from, and for students ``teacher``), ``model`` (weights used for
inference: the EMA ones), ``iteration`` (of this run), ``total_iterations`` (across the runs behind
the weights), ``metrics``, and, in training checkpoints only, ``train_state`` for resuming.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from edge_affectsr.distill.archs.registry import ARCH_REGISTRY
from edge_affectsr.errors import UserError

FORMAT = "edge-affectsr/checkpoint"
VERSION = 1


class CheckpointError(UserError, ValueError):
    """A checkpoint that is missing, damaged, or of the wrong kind or version."""


def save_atomic(obj: dict, path: Path) -> None:
    """Write to a temp file in the same folder, fsync, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, kinds: tuple[str, ...] | None = None) -> dict:
    """The checkpoint at ``path``, checked: ours, not newer than this toolkit, and of one of ``kinds``
    (default: any registered architecture)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder (a model bundle?), not a checkpoint file (.pt)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many kinds for a damaged file
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an edge-affectsr checkpoint")
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt['version']} is newer than this toolkit reads ({VERSION}); upgrade edge-affectsr")
    kinds = tuple(ARCH_REGISTRY) if kinds is None else kinds
    if ckpt.get("kind") not in kinds:
        raise CheckpointError(f"{path}: a {ckpt.get('kind')!r} checkpoint, expected one of {kinds}")
    return ckpt


def total_iterations(ckpt: dict) -> int:
    """All the training behind a checkpoint's weights, counting the runs it was fine-tuned from
    (``--init``); a bundle's version, so a fine-tuned model never looks older than its parent."""
    return int(ckpt.get("total_iterations", ckpt.get("iteration", 0)))


def inference_checkpoint(ckpt: dict) -> dict:
    """The shippable part of a training checkpoint (no optimizer state)."""
    return {k: v for k, v in ckpt.items() if k != "train_state"}


def half_precision(ckpt: dict) -> dict:
    """The inference checkpoint with its float weights stored as fp16: half the bytes for a shipped
    model. Loading casts them back into the fp32 model (``load_state_dict`` copies), at a cost
    below 0.01 dB on the teacher (docs/teacher.md)."""
    weights = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    return inference_checkpoint(ckpt) | {"model": weights}


def main(argv: list[str] | None = None) -> None:
    """``python -m edge_affectsr.distill.checkpoints IN OUT``: write IN's inference weights to OUT in fp16."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m edge_affectsr.distill.checkpoints", description=main.__doc__)
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    args = parser.parse_args(argv)
    try:
        save_atomic(half_precision(load_checkpoint(args.src)), args.dst)
    except UserError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
