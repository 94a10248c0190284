"""The training config both training commands read: ``kind`` (a registered architecture), its
``model:`` section, the weighted ``loss:`` terms, ``data:`` and ``train:``. Checked as a whole when
the file is read, so a wrong name, or a loss term that this model or command cannot feed, fails
before any face is loaded."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_affectsr.distill.archs.registry import ARCH_REGISTRY
from edge_affectsr.runtime.degradation import PRESETS, CameraDegradation
from edge_affectsr.distill.losses.config import LossWeights, check_loss_fits


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    val_faces: int = Field(100, description="validation faces used during training (first N of the val folder)")
    degradation: CameraDegradation | None = Field(
        None, description="camera degradation of the LR input: a preset (camera, camera-hard, lens, jpeg, h264) or its "
                          "parameters (docs/camera.md); none: the clean protocol. Validation faces get the same model")
    variants: int = Field(1, ge=1, le=8, description="camera renderings of each training face (with a degradation)")

    @model_validator(mode="before")
    @classmethod
    def _old_switches(cls, data: Any) -> Any:
        """Checkpoints from before the camera model carry ``degradations: {blur, noise, jpeg}``, all off."""
        if isinstance(data, dict) and "degradations" in data:
            data = dict(data)
            old = data.pop("degradations") or {}
            if any(old.get(k) for k in ("blur", "noise", "jpeg")):
                raise ValueError("degradations.blur/noise/jpeg were replaced by the camera model: use degradation: camera")
        return data

    @field_validator("degradation", mode="before")
    @classmethod
    def _preset(cls, value: Any) -> Any:
        """A preset's name stands for its parameters (stored in full in the run's config)."""
        if isinstance(value, str):
            if value not in PRESETS:
                raise ValueError(f"unknown preset {value!r}; choose one of {', '.join(PRESETS)} or give the parameters")
            return PRESETS[value]
        return value


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    iterations: int = Field(20000, description="optimiser steps of this run")
    batch_size: int = Field(16, description="faces per step and process")
    lr: float = Field(2e-4, description="peak learning rate (Adam)")
    lr_min: float = Field(1e-6, description="learning rate at the end of the cosine decay")
    warmup: int = Field(200, description="steps of linear warm-up (the EMA starts after them)")
    ema_decay: float = Field(0.999, description="decay of the weights' moving average, the ones saved")
    grad_clip: float = Field(1.0, description="gradient norm clip; 0: none")
    val_every: int = Field(500, description="steps between validations")
    checkpoint_every: int = Field(250, description="steps between checkpoints")
    seed: int = Field(0, description="seeds the weights, the batches and the degradations")
    threads: int = Field(0, description="torch CPU threads; 0: torch's default")
    device: str = Field("auto", description="auto | cpu | cuda")


LOSS_HELP = "loss term -> weight, summed in this order; 0: left out"


def loss_field(default: dict[str, float]):
    """The ``loss`` field of a command's schema, with its default terms."""
    return Field(default_factory=lambda: dict(default), description=LOSS_HELP)


class TrainingConfig(BaseModel):
    """A command's schema subclasses this: ``kind`` defaults to the architecture it trains,
    ``model`` is that architecture's ``config_class`` and ``loss`` has its default terms."""

    model_config = ConfigDict(extra="forbid")
    distills: ClassVar[bool] = False  # whether the command computes a teacher's targets for the loss

    kind: str = Field(description="the registered architecture this config trains")
    model: BaseModel = Field(description="the architecture's hyper-parameters")
    loss: LossWeights = Field(description=LOSS_HELP)
    data: DataConfig = Field(default_factory=DataConfig, description="data options")
    train: TrainConfig = Field(default_factory=TrainConfig, description="the optimiser and schedule")

    @field_validator("kind")
    @classmethod
    def _registered_arch(cls, kind: str) -> str:
        ARCH_REGISTRY.get(kind)  # an unknown name lists the known ones
        expected = cls.model_fields["kind"].default
        if kind != expected:
            raise ValueError(f"this command trains the {expected!r} architecture, not {kind!r}")
        return kind

    @model_validator(mode="after")
    def _loss_fits(self) -> TrainingConfig:
        check_loss_fits(self.loss, {"critic", *self.model.outputs, *(["teacher"] if self.distills else [])})
        return self
