"""Train the full AffectSRNet teacher: ``edge-affectsr train-teacher --config C --data DIR``."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from edge_affectsr.distill.archs.fer_critic import build_fer_critic
from edge_affectsr.distill.archs.teacher import AffectSRNet, TeacherConfig
from edge_affectsr.distill.data.dataset import FaceArrays, FaceSRDataset, prepare_faces
from edge_affectsr.distill.data.degradations import DegradationConfig
from edge_affectsr.distill.data.readers import face_set
from edge_affectsr.distill.losses import LossWeights, SRLoss
from edge_affectsr.distill.training import Run, TrainConfig, Trainer, check_init
from edge_affectsr.config import load_config
from edge_affectsr.errors import UserError

log = logging.getLogger(__name__)


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    val_faces: int = 100  # validation faces used during training (first N of the val folder)
    degradations: DegradationConfig = Field(default_factory=DegradationConfig)


class TeacherTrainingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = "teacher"
    model: TeacherConfig = Field(default_factory=TeacherConfig)
    loss: LossWeights = Field(default_factory=LossWeights)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


def make_teacher_loss(cfg: TeacherTrainingConfig):
    needs_critic = cfg.loss.perceptual or cfg.loss.style or cfg.loss.expression
    criterion = SRLoss(cfg.loss, build_fer_critic() if needs_critic else None)

    def loss_fn(model: torch.nn.Module, batch: dict):
        out = model(batch["lr"], batch["lm_lr"], batch["found_lr"])
        mask = batch["found_lr"]
        return criterion(out.sr, batch["hr"], out.lm_pred, batch["lm_hr"], mask)

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
    train = prepare_faces(records, scale, degradations=cfg_data.degradations, seed=seed, desc="train faces")
    valid = prepare_faces(val_records, scale, desc="val faces")
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
    )
    trainer = Trainer(run, cfg.train, init=init)
    criterion.to(trainer.device)
    return trainer.fit()
