"""The training loop shared by the teacher and the student: seeds, DDP, EMA, progress, periodic
validation, atomic checkpoints and exact resume; the run folder's record of it (``config.yaml``,
``metrics.csv``, ``best.pt``: :mod:`edge_affectsr.distill.run_folder`).

Data live in memory (``FaceSRDataset``), so batches are drawn from a per-epoch permutation seeded by
``(seed, epoch)``: after a resume the run continues with exactly the batches it would have seen.
Under ``torchrun`` every rank takes its own slice of each permutation; rank 0 validates and saves.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from edge_affectsr.distill.archs.registry import ARCH_REGISTRY
from edge_affectsr.distill.checkpoints import (FORMAT, VERSION, CheckpointError, inference_checkpoint, load_checkpoint, save_atomic,
                                 total_iterations)
from edge_affectsr.distill.data.dataset import FaceSRDataset, to_uint8_image
from edge_affectsr.distill.run_folder import BEST, MetricsLog, write_config
from edge_affectsr.distill.train_config import TrainConfig
from edge_affectsr.errors import UserError
from edge_affectsr.metrics import psnr

log = logging.getLogger(__name__)


@dataclass
class Run:
    """What one training run needs beyond the config."""

    kind: str  # the registered architecture; the checkpoint's kind
    config: dict  # the full config, saved into checkpoints
    model: torch.nn.Module
    loss_fn: Callable[[torch.nn.Module, dict], tuple[torch.Tensor, dict]]
    train_set: FaceSRDataset
    val_set: FaceSRDataset
    out_dir: Path
    critic: torch.nn.Module | None = None  # the FER critic, for validation's expression agreement (None: not measured)


def distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank() if world > 1 else 0), world


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError("train.device is 'cuda' but no CUDA GPU is visible")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_init(path: Path, kind: str, config: dict) -> dict:
    """The ``--init`` checkpoint, if it can start a ``kind`` run with ``config``'s model section
    (they may differ only in the architecture's ``branch_keys``); the training commands call it
    before any data is loaded, so a wrong file fails in seconds, not after the teacher targets."""
    ckpt = load_checkpoint(path, kinds=(kind,))
    schema = ARCH_REGISTRY.get(kind).config_class
    theirs, ours = (schema.model_validate(c).model_dump() for c in (ckpt["config"]["model"], config["model"]))
    differ = sorted(k for k in ours if ours[k] != theirs[k] and k not in schema.branch_keys)
    if differ:
        raise CheckpointError(f"--init {path}: its model config differs from this run's in {', '.join(differ)}; "
                              f"fine-tuning needs the same model section (it may differ in: "
                              f"{', '.join(sorted(schema.branch_keys)) or 'nothing'})")
    return ckpt


def load_init_weights(model: torch.nn.Module, ckpt: dict) -> tuple[list[str], list[str]]:
    """Start ``model`` from an ``--init`` checkpoint's weights; returns (new, dropped) tensor names:
    the branches ``check_init`` let the model add (they keep their own start, the identity by
    design) or leave out."""
    result = model.load_state_dict(ckpt["model"], strict=False)
    return list(result.missing_keys), list(result.unexpected_keys)


def lr_at(it: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``lr_min``."""
    if it < cfg.warmup:
        return cfg.lr * (it + 1) / cfg.warmup
    t = (it - cfg.warmup) / max(1, cfg.iterations - cfg.warmup)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * min(t, 1.0)))


def batch_indices(n: int, it: int, cfg: TrainConfig, rank: int, world: int) -> torch.Tensor:
    """Indices of iteration ``it``'s batch on this rank (drop-last per epoch, reproducible)."""
    per_rank = cfg.batch_size
    steps = max(1, n // (per_rank * world))
    epoch, step = divmod(it, steps)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch))
    start = (step * world + rank) * per_rank
    return perm[start : start + per_rank]


def collate(ds: FaceSRDataset, idx: torch.Tensor, device: torch.device) -> dict:
    items = [ds[int(i)] for i in idx]
    return {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}


@torch.no_grad()
def validate(run: Run, model: torch.nn.Module, device: torch.device, batch_size: int = 32) -> dict[str, float]:
    """``val_psnr``: mean PSNR (uint8, RGB) of the model on the validation faces; ``val_agreement``:
    how often the critic's top expression on SR equals its top one on HR (NaN without a critic)."""
    model.eval()
    scores, agree = [], []
    for start in range(0, len(run.val_set), batch_size):
        batch = collate(run.val_set, torch.arange(start, min(start + batch_size, len(run.val_set))), device)
        out = model(batch["lr"], batch["lm_lr"], batch["found_lr"]).sr
        sr, hr = to_uint8_image(out), to_uint8_image(batch["hr"])
        scores += [psnr(a, b) for a, b in zip(sr, hr)]
        if run.critic is not None:
            agree += (run.critic.probs(out.clamp(0, 1)).argmax(1) == run.critic.probs(batch["hr"]).argmax(1)).tolist()
    return {"val_psnr": float(np.mean(scores)), "val_agreement": float(np.mean(agree)) if agree else math.nan}


class Trainer:
    """``init``: a checkpoint of the same kind whose weights start the run (fine-tuning; the model
    may add or leave out branches, see ``load_init_weights``); ignored when the run folder can resume."""

    def __init__(self, run: Run, cfg: TrainConfig, init: Path | None = None) -> None:
        self.run, self.cfg, self.init = run, cfg, init
        self.rank, self.world = distributed()
        self.device = pick_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed + self.rank)
        self.model = run.model.to(self.device)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.train_model = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.99))
        self.it, self.best_psnr, self.last_psnr = 0, -1.0, float("nan")
        self.best_iteration, self.last_agreement = 0, math.nan
        self.prior_iterations = 0  # iterations behind the --init weights (a model's age across fine-tunes)
        self.last_path, self.best_path = run.out_dir / "last.pt", run.out_dir / BEST

    # --- checkpoints -----------------------------------------------------------------------------
    def _checkpoint(self) -> dict:
        return {
            "format": FORMAT, "version": VERSION, "kind": self.run.kind, "config": self.run.config,
            "model": self.ema.state_dict(), "iteration": self.it,
            "total_iterations": self.prior_iterations + self.it,
            "metrics": {"val_psnr": self.last_psnr, "best_val_psnr": self.best_psnr,
                        "val_agreement": self.last_agreement, "best_iteration": self.best_iteration},
            "train_state": {
                "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(), "python_rng": random.getstate(),
            },
        }

    def save(self) -> None:
        if self.rank == 0:
            ckpt = self._checkpoint()
            save_atomic(ckpt, self.last_path)
            save_atomic(inference_checkpoint(ckpt), self.run.out_dir / "model.pt")

    def try_resume(self) -> bool:
        if not self.last_path.exists():
            return False
        ckpt = load_checkpoint(self.last_path, kinds=(self.run.kind,))
        if ckpt["config"].get("model") != self.run.config.get("model"):
            raise CheckpointError(f"{self.last_path} was trained with a different model config; use a new --out folder")
        st = ckpt["train_state"]
        self.model.load_state_dict(st["model"])
        self.ema.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(st["optimizer"])
        torch.set_rng_state(st["torch_rng"])
        np.random.set_state(st["numpy_rng"])
        random.setstate(st["python_rng"])
        self.it = ckpt["iteration"]
        self.prior_iterations = total_iterations(ckpt) - self.it
        self.run.config["init"] = ckpt["config"].get("init")  # the run's lineage, not this command line's
        self.best_psnr = ckpt["metrics"]["best_val_psnr"]
        self.last_psnr = ckpt["metrics"]["val_psnr"]
        self.last_agreement = ckpt["metrics"].get("val_agreement", math.nan)  # absent before agreement was measured
        self.best_iteration = ckpt["metrics"].get("best_iteration", 0)
        log.info("resumed from %s at iteration %d", self.last_path, self.it)
        if self.init is not None:
            log.warning("--init %s ignored: %s resumes its own run (use a new --out to fine-tune afresh)",
                        self.init, self.last_path)
        return True

    def load_init(self) -> None:
        ckpt = check_init(self.init, self.run.kind, self.run.config)
        new, dropped = load_init_weights(self.model, ckpt)
        self.ema.load_state_dict(self.model.state_dict())
        for what, names in (("new in this model, at their initialisation", new),
                            ("not in this model, dropped", dropped)):
            if names:
                log.info("--init: %d tensors %s: %s", len(names), what, ", ".join(names))
        self.prior_iterations = total_iterations(ckpt)
        log.info("starting from the weights of %s (%d iterations behind them)", self.init, self.prior_iterations)

    # --- loop ------------------------------------------------------------------------------------
    @torch.no_grad()
    def _update_ema(self) -> None:
        """One fused lerp over all float tensors: a per-tensor loop launches ~2 GPU kernels each."""
        d = self.cfg.ema_decay if self.it > self.cfg.warmup else 0.0
        ema, live = self.ema.state_dict(), self.model.state_dict()
        floats = [k for k, v in ema.items() if v.dtype.is_floating_point]
        torch._foreach_lerp_([ema[k] for k in floats], [live[k] for k in floats], 1.0 - d)
        for k, v in ema.items():
            if not v.dtype.is_floating_point:
                v.copy_(live[k])

    def _step(self) -> tuple[float, dict]:
        """One optimiser step -> (weighted loss, each term's value)."""
        self.train_model.train()
        idx = batch_indices(len(self.run.train_set), self.it, self.cfg, self.rank, self.world)
        batch = collate(self.run.train_set, idx, self.device)
        for g in self.opt.param_groups:
            g["lr"] = lr_at(self.it, self.cfg)
        loss, parts = self.run.loss_fn(self.train_model, batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.it += 1
        self._update_ema()
        return float(loss.detach()), parts

    def fit(self) -> dict:
        """Train to ``iterations`` (resuming the run folder's own run, else from ``init``), recording
        the run (module doc); rank 0 writes the files. Returns the run's last and best numbers."""
        if not self.try_resume() and self.init is not None:
            self.load_init()
        metrics = None
        if self.rank == 0:
            write_config(self.run.out_dir, self.run.config)
            metrics = MetricsLog(self.run.out_dir, resume_at=self.it)
        try:
            with logging_redirect_tqdm():  # log lines above the progress bar, not through it
                self._loop(metrics)
        finally:
            if metrics is not None:
                metrics.close()
        if self.world > 1:
            dist.barrier()
        return {"iterations": self.it, "val_psnr": self.last_psnr, "best_val_psnr": self.best_psnr,
                "best_iteration": self.best_iteration, "val_agreement": self.last_agreement}

    def _loop(self, metrics: MetricsLog | None) -> None:
        bar = tqdm(total=self.cfg.iterations, initial=self.it, desc=self.run.kind, unit="it",
                   disable=self.rank != 0, dynamic_ncols=True)
        while self.it < self.cfg.iterations:
            loss, parts = self._step()
            lr = self.opt.param_groups[0]["lr"]
            bar.update(1)
            validation = None
            if self.it % self.cfg.val_every == 0 or self.it == self.cfg.iterations:
                validation = self._validate()
            if metrics is not None:
                metrics.write(self.it, lr, loss, parts, validation)
            if self.it % self.cfg.checkpoint_every == 0 or self.it == self.cfg.iterations:
                self.save()
            bar.set_postfix(loss=f"{loss:.4f}", val_psnr=f"{self.last_psnr:.2f}")
        bar.close()

    def _validate(self) -> dict[str, float] | None:
        """Rank 0: validate the EMA weights, keep ``best.pt`` when they are the best so far."""
        if self.rank != 0:
            return None
        scores = validate(self.run, self.ema, self.device)
        self.last_psnr, self.last_agreement = scores["val_psnr"], scores["val_agreement"]
        agreement = "" if math.isnan(self.last_agreement) else f", expression agreement {self.last_agreement:.3f}"
        log.info("iteration %d: validation PSNR %.3f dB%s (EMA weights)", self.it, self.last_psnr, agreement)
        if self.last_psnr > self.best_psnr:
            self.best_psnr, self.best_iteration = self.last_psnr, self.it
            save_atomic(inference_checkpoint(self._checkpoint()), self.best_path)
        return scores
