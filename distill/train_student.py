"""Distil the teacher into the edge student: ``edge-affectsr distill --teacher T --data DIR --out DIR``.

The teacher's outputs (SR, LR features, landmark-node embeddings, the critic's distribution on its
SR) are computed once for every training face and held in memory, so each student step costs only
the student and the critic: on a CPU that is the difference between hours and minutes.

With a camera degradation (``data.degradation``) the distillation is *privileged* by default: the
teacher upscales the clean protocol LR of each face and the student learns to reach that output
from the camera-degraded LR of the same face (``teacher_input: degraded`` gives the teacher the
student's input instead). The teacher was trained on clean LR, so this is how a clean-trained teacher
can still teach camera robustness without being retrained (which needs a GPU).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from tqdm import tqdm

from edge_affectsr import landmark_graph
from edge_affectsr.assets import cache_dir
from edge_affectsr.config import load_config
from edge_affectsr.distill.archs.fer_critic import build_fer_critic
from edge_affectsr.distill.archs.student import StudentConfig, StudentSR
from edge_affectsr.distill.data.dataset import FaceArrays, FaceSRDataset, to_tensor_image
from edge_affectsr.distill.losses.config import LossWeights, loss_needs
from edge_affectsr.distill.losses.weighted import WeightedLoss
from edge_affectsr.distill.torch_backend import TorchBackend
from edge_affectsr.distill.train_config import TrainingConfig, loss_field
from edge_affectsr.distill.train_teacher import load_faces
from edge_affectsr.distill.training import Run, Trainer, check_init, pick_device
from edge_affectsr.errors import UserError
from edge_affectsr.models import resolve_model

log = logging.getLogger(__name__)


class StudentTrainingConfig(TrainingConfig):
    distills = True
    kind: str = Field("student", description="what this config trains: student")
    model: StudentConfig = Field(default_factory=StudentConfig, description="the architecture")
    loss: LossWeights = loss_field({"pixel": 1.0, "output": 1.0})
    teacher_input: Literal["clean", "degraded"] = Field(
        "clean", description="with a camera degradation: the teacher upscales the clean LR (privileged) or the degraded one")


def node_positions(student_subset: str, teacher_subset: str) -> torch.Tensor:
    """Where the student's landmark nodes sit among the teacher's (the student's must be a subset)."""
    s, t = landmark_graph.subset_nodes(student_subset), landmark_graph.subset_nodes(teacher_subset)
    pos = np.searchsorted(t, s)
    if not np.array_equal(t[np.minimum(pos, len(t) - 1)], s):
        raise UserError(f"student landmark subset {student_subset!r} is not inside the teacher's {teacher_subset!r}")
    return torch.from_numpy(pos)


def attach_teacher_targets(ds: FaceSRDataset, teacher: TorchBackend, faces: FaceArrays, critic,
                           student_subset: str, device: torch.device, repeat: int = 1,
                           cache: Path | None = None) -> None:
    """Fill ``ds.extras`` with t_sr, t_feat, t_nodes (fp16) and t_probs: the teacher on ``faces``' LR
    and LR landmarks (the student's own faces, or their clean twins for privileged distillation).

    ``repeat``: rows come in runs of ``repeat`` identical inputs (the clean twins of ``data.variants``
    renderings of one face), so the teacher runs once per run and its targets are repeated. With
    ``cache`` (a folder; training passes ``<cache>/teacher-targets``) the targets are kept on disk,
    keyed by the teacher's and critic's weights and the exact inputs: the clean twins are the same for
    every seed and control of a recipe, so only the first of a series of runs pays the teacher
    (minutes on a CPU).
    """
    pos = node_positions(student_subset, teacher.model.cfg.landmark_subset)
    inputs = (faces.lr[::repeat], faces.found_lr[::repeat], faces.lm_lr[::repeat][:, teacher.nodes])
    targets = (_teacher_targets(teacher, critic, pos, *inputs, device) if cache is None
               else _cached_targets(cache, teacher, critic, pos, inputs, device))
    ds.extras.update({k: v.repeat_interleave(repeat, dim=0) for k, v in targets.items()})


def _cached_targets(cache: Path, teacher: TorchBackend, critic, pos: torch.Tensor,
                    inputs: tuple[np.ndarray, ...], device: torch.device) -> dict[str, torch.Tensor]:
    path = cache / f"{_targets_key(teacher, critic, pos, inputs)}.pt"
    if path.is_file():
        log.info("teacher targets from the cache: %s", path)
        return torch.load(path)
    targets = _teacher_targets(teacher, critic, pos, *inputs, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(targets, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)  # atomic: a killed run leaves no half file
    return targets


def _targets_key(teacher: TorchBackend, critic, pos: torch.Tensor, inputs: tuple[np.ndarray, ...]) -> str:
    h = hashlib.sha256()
    for module in (teacher.model, critic):
        for t in module.state_dict().values():
            h.update(t.detach().cpu().numpy().tobytes())
    for a in (pos.numpy(), *inputs):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:32]


@torch.no_grad()
def _teacher_targets(teacher: TorchBackend, critic, pos: torch.Tensor, lr_u8: np.ndarray, found_lr: np.ndarray,
                     lm_lr: np.ndarray, device: torch.device, batch: int = 32) -> dict[str, torch.Tensor]:
    """The teacher on ``lr_u8`` [N, 32, 32, 3] with its landmarks ``lm_lr`` [N, nodes, 2]: t_sr
    [N, 3, 128, 128], t_feat, t_nodes (fp16) and the critic's t_probs [N, classes]."""
    model = teacher.model.to(device).eval()
    critic.to(device)
    lr, found, lms = to_tensor_image(lr_u8), torch.from_numpy(found_lr), torch.from_numpy(lm_lr).float()
    outs: dict[str, list] = {k: [] for k in ("t_sr", "t_feat", "t_nodes", "t_probs")}
    for i in tqdm(range(0, len(lr), batch), desc="teacher targets", unit="batch", dynamic_ncols=True):
        sl = slice(i, i + batch)
        o = model(lr[sl].to(device), lms[sl].to(device), found[sl].to(device))
        sr = o.sr.clamp(0, 1)
        outs["t_sr"].append(sr.half().cpu())
        outs["t_feat"].append(o.features.half().cpu())
        if o.nodes is not None:
            outs["t_nodes"].append(o.nodes[:, pos].half().cpu())
        outs["t_probs"].append(critic.probs(sr).cpu())
    model.cpu()  # the backend runs on the CPU; free the device for the student
    return {k: torch.cat(v) for k, v in outs.items() if v}


@torch.no_grad()
def attach_hr_probs(ds: FaceSRDataset, critic, device: torch.device, batch: int = 64) -> None:
    """``ds.extras["hr_probs"]``: the critic's distribution on each HR face (no teacher needed)."""
    critic.to(device)
    probs = [critic.probs(ds.hr[i : i + batch].to(device)).cpu() for i in range(0, len(ds), batch)]
    ds.extras["hr_probs"] = torch.cat(probs)


def distill_student(config: Path, teacher_ref: str, data: Path, out: Path, val: Path | None = None,
                    iterations: int | None = None, overrides: list[str] | None = None,
                    init: Path | None = None) -> dict:
    """Train a student; ``overrides`` are ``--set KEY=VALUE`` items, ``init`` a student checkpoint
    to start from (fine-tuning) instead of random weights."""
    cfg = load_config(config, StudentTrainingConfig, overrides)
    if iterations is not None:
        cfg.train.iterations = iterations
    needs_teacher = "teacher" in loss_needs(cfg.loss)
    config_doc = cfg.model_dump(mode="json") | {"teacher": str(teacher_ref) if needs_teacher else None,
                                                "init": str(init) if init else None}
    if init is not None:
        check_init(init, "student", config_doc)
    critic = build_fer_critic()
    train, valid = load_faces(cfg.data, cfg.model.scale, data, val, cfg.train.seed)
    train_set = FaceSRDataset(train, cfg.model.landmark_subset)
    val_set = FaceSRDataset(valid, cfg.model.landmark_subset)
    device = pick_device(cfg.train.device)
    if needs_teacher:
        teacher = TorchBackend(resolve_model(teacher_ref), name=str(teacher_ref))
        if teacher.scale != cfg.model.scale:
            raise UserError(f"teacher upscales x{teacher.scale} but the student is x{cfg.model.scale}")
        privileged = train.clean is not None and cfg.teacher_input == "clean"
        attach_teacher_targets(train_set, teacher, train.clean if privileged else train, critic,
                               cfg.model.landmark_subset, device, repeat=cfg.data.variants if privileged else 1,
                               cache=cache_dir() / "teacher-targets")
    if cfg.loss.get("expression_hr"):
        attach_hr_probs(train_set, critic, device)
    torch.manual_seed(cfg.train.seed)
    criterion = WeightedLoss(cfg.loss, critic)

    def loss_fn(model, batch):
        return criterion(model(batch["lr"], batch["lm_lr"]), batch)

    run = Run(kind="student", config=config_doc, model=StudentSR(cfg.model), loss_fn=loss_fn,
              train_set=train_set, val_set=val_set, out_dir=Path(out), critic=critic)
    trainer = Trainer(run, cfg.train, init=init)
    criterion.to(trainer.device)
    return trainer.fit()
