"""One rank of the DDP smoke test in tests/distill/test_training.py (not a test module itself).

Usage (environment from the launcher: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT):
    python tests/_ddp_worker.py FACES.npz OUT_DIR WEIGHTS_DIR ITERATIONS

Each rank builds the tiny teacher from a *rank-dependent* seed, so identical weights after training
show that DDP synchronised them; rank r writes its final weights to WEIGHTS_DIR/rank{r}.pt.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from edge_affectsr.distill.archs.teacher import AffectSRNet, TeacherConfig
from edge_affectsr.distill.data.dataset import FaceArrays, FaceSRDataset
from edge_affectsr.distill.train_config import TrainConfig
from edge_affectsr.distill.train_teacher import TeacherTrainingConfig, make_teacher_loss
from edge_affectsr.distill.training import Run, Trainer

TINY = dict(nf=8, gc=4, blocks=1, hr_nf=4, gcn_hidden=8, gcn_layers=1)


def load_faces(path: Path, prefix: str) -> FaceArrays:
    d = np.load(path)
    return FaceArrays(
        names=[str(n) for n in d[f"{prefix}_names"]], hr=d[f"{prefix}_hr"], lr=d[f"{prefix}_lr"],
        lm_lr=d[f"{prefix}_lm_lr"], lm_hr=d[f"{prefix}_lm_hr"], found_lr=d[f"{prefix}_found_lr"],
        found_hr=d[f"{prefix}_found_hr"], skipped=[],
    )


def main(faces: str, out_dir: str, weights_dir: str, iterations: str, landmark_weight: str = "0") -> None:
    rank = int(os.environ["RANK"])
    cfg = TeacherTrainingConfig(
        model=TeacherConfig(**TINY), loss={"pixel": 1.0, "landmark": float(landmark_weight)},
        train=TrainConfig(iterations=int(iterations), batch_size=2, val_every=1, checkpoint_every=1,
                          warmup=1, threads=1, device="cpu"),
    )
    torch.manual_seed(1000 + rank)  # deliberately different initial weights per rank
    model = AffectSRNet(cfg.model)
    loss_fn, _ = make_teacher_loss(cfg)
    run = Run(kind="teacher", config=cfg.model_dump(mode="json"), model=model, loss_fn=loss_fn,
              train_set=FaceSRDataset(load_faces(Path(faces), "train")),
              val_set=FaceSRDataset(load_faces(Path(faces), "val")), out_dir=Path(out_dir))
    trainer = Trainer(run, cfg.train)
    assert trainer.world == int(os.environ["WORLD_SIZE"]) and trainer.rank == rank
    result = trainer.fit()
    torch.save({"model": trainer.model.state_dict(), "ema": trainer.ema.state_dict(), "result": result},
               Path(weights_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
