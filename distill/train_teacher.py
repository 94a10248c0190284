"""Train the full AffectSRNet teacher: ``edge-affectsr train-teacher --config C --data DIR``."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from pydantic import Field

from edge_affectsr.config import load_config
from edge_affectsr.distill.archs.fer_critic import build_fer_critic
from edge_affectsr.distill.archs.teacher import AffectSRNet, TeacherConfig
from edge_affectsr.distill.data.dataset import FaceArrays, FaceSRDataset, prepare_faces
from edge_affectsr.distill.data.readers import face_set
from edge_affectsr.distill.losses.config import LossWeights, loss_needs
from edge_affectsr.distill.losses.weighted import WeightedLoss
from edge_affectsr.distill.train_config import DataConfig, TrainingConfig, loss_field
from edge_affectsr.distill.training import Run, Trainer, check_init
from edge_affectsr.errors import UserError

log = logging.getLogger(__name__)
VAL_SEED = 1_000_003  # the validation faces' camera draws: apart from every training seed


class TeacherTrainingConfig(TrainingConfig):
    kind: str = Field("teacher", description="what this config trains: teacher")
    model: TeacherConfig = Field(default_factory=TeacherConfig, description="the architecture")
    loss: LossWeights = loss_field({"pixel": 1.0})


def make_teacher_loss(cfg: TeacherTrainingConfig):
    weights, keep = dict(cfg.loss), ()
    if cfg.model.use_graph:
        # The landmark term even at weight 0 (then a zero gradient): under DDP every parameter
        # behind a model output must get a gradient, or the next iteration fails (the landmark head).
        weights.setdefault("landmark", 0.0)
        keep = ("landmark",)
    critic = build_fer_critic() if "critic" in loss_needs(weights) else None
    criterion = WeightedLoss(weights, critic, keep=keep)

    def loss_fn(model: torch.nn.Module, batch: dict):
        return criterion(model(batch["lr"], batch["lm_lr"], batch["found_lr"]), batch)

    return loss_fn, criterion


def load_faces(cfg_data: DataConfig, scale: int, data: Path, val: Path | None, seed: int) -> tuple[FaceArrays, FaceArrays]:
    """Training and validation faces under the protocol, with landmarks (see ``prepare_faces``)."""
    records = face_set(data, split="train")
    if val is None:
        if len(records) <= cfg_data.val_faces:
            raise UserError(f"{data} has only {len(records)} faces; give --val or lower data.val_faces")
        records, val_records = records[: -cfg_data.val_faces], records[-cfg_data.val_faces :]
    else:
        val_records = face_set(val, split="val")[: cfg_data.val_faces]
    camera = cfg_data.degradation
    train = prepare_faces(records, scale, degradation=camera, seed=seed, variants=cfg_data.variants, desc="train faces")
    # validation faces: the same camera model, other draws (a seed no training run uses)
    valid = prepare_faces(val_records, scale, degradation=camera, seed=VAL_SEED, desc="val faces")
    return train, valid


def train_teacher(config: Path, data: Path, out: Path, val: Path | None = None, iterations: int | None = None,
                  overrides: list[str] | None = None, init: Path | None = None) -> dict:
    """Train a teacher; ``overrides`` are ``--set KEY=VALUE`` items, ``init`` a teacher checkpoint to start from."""
    cfg = load_config(config, TeacherTrainingConfig, overrides)
    if iterations is not None:
        cfg.train.iterations = iterations
    config_doc = cfg.model_dump(mode="json") | {"init": str(init) if init else None}
    if init is not None:
        check_init(init, "teacher", config_doc)
    train, valid = load_faces(cfg.data, cfg.model.scale, data, val, cfg.train.seed)
    subset = cfg.model.landmark_subset
    torch.manual_seed(cfg.train.seed)
    loss_fn, criterion = make_teacher_loss(cfg)
    run = Run(
        kind="teacher", config=config_doc, model=AffectSRNet(cfg.model), loss_fn=loss_fn,
        train_set=FaceSRDataset(train, subset), val_set=FaceSRDataset(valid, subset), out_dir=Path(out),
        critic=criterion.critic,
    )
    trainer = Trainer(run, cfg.train, init=init)
    criterion.to(trainer.device)
    return trainer.fit()
