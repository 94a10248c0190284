"""The proof that a conversion kept quality and expressions: every format on every installed
runtime, scored against HR, against the torch fp32 output, and against each other: the
measurements ``gates.py`` judges.

Like Ultralytics' export benchmark, with expression fidelity added.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edge_affectsr import metrics
from edge_affectsr.convert.gates import measure_verification
from edge_affectsr.convert.runners import run_all
from edge_affectsr.distill.archs.fer_critic import FERCritic
from edge_affectsr.distill.data.dataset import to_tensor_image, to_uint8_image
from edge_affectsr.distill.evaluate import critic_probs
from edge_affectsr.runtime.backend import load_model
from edge_affectsr.runtime.interpreter import available_runtimes

log = logging.getLogger(__name__)


@torch.no_grad()
def torch_reference(student, lr: np.ndarray, lm: np.ndarray, batch: int = 64) -> np.ndarray:
    outs = []
    for i in range(0, len(lr), batch):
        sr = student(to_tensor_image(lr[i : i + batch]), torch.from_numpy(lm[i : i + batch]).float()).sr
        outs.append(to_uint8_image(sr))
    return np.concatenate(outs)


def _scores(sr: np.ndarray, hr: np.ndarray, ref: np.ndarray, p_sr: np.ndarray, p_hr: np.ndarray) -> dict:
    return {
        "psnr": float(np.mean([metrics.psnr(a, b) for a, b in zip(sr, hr)])),
        "ssim": float(np.mean([metrics.ssim(a, b) for a, b in zip(sr, hr)])),
        "psnr_vs_fp32": float(np.mean([min(metrics.psnr(a, b), 99.0) for a, b in zip(sr, ref)])),
        "agreement": metrics.expression_agreement(p_hr, p_sr),
    }


def _runners(files: dict[str, Path]):
    """(format, runtime, factory(threads)) for every format in ``files`` x installed runtime."""
    for fmt in [f for f in ("int8", "fp16") if f in files]:
        for rt in available_runtimes():
            yield fmt, rt, (lambda threads, f=files[fmt], r=rt: load_model(f, runtime=r, threads=threads))
    if "onnx" in files:
        yield "onnx", "onnxruntime", (lambda threads: load_model(files["onnx"], threads=threads))


def verify(files: dict[str, Path], student, critic: FERCritic, lr: np.ndarray, lm: np.ndarray, hr: np.ndarray) -> dict:
    """Rows for the table and the gates' measurements on them. ``files``: verification label
    (``int8``, ``fp16``, ``onnx``) -> model file; the formats absent are not run."""
    ref = torch_reference(student, lr, lm)
    p_hr = critic_probs(critic, hr)
    rows = [{"format": "torch-fp32", "runtime": "torch", "status": "ok", "size_kb": None,
             **_scores(ref, hr, ref, critic_probs(critic, ref), p_hr), "ms_1t": None, "ms_2t": None}]
    int8_outputs: dict[str, np.ndarray] = {}
    for fmt, rt, make in tqdm(list(_runners(files)), desc="verify", unit="model", dynamic_ncols=True):
        row = {"format": fmt, "runtime": rt, "size_kb": round(files[fmt].stat().st_size / 1024, 1)}
        try:
            sr, ms2 = run_all(make(2), lr, lm)
            _, ms1 = run_all(make(1), lr[:32], lm[:32])
        except Exception as e:  # a runtime that cannot load or run the model is a table row, not a crash
            rows.append(row | {"status": f"failed: {type(e).__name__}: {e}"[:200]})
            continue
        rows.append(row | {"status": "ok", **_scores(sr, hr, ref, critic_probs(critic, sr), p_hr), "ms_1t": ms1, "ms_2t": ms2})
        if fmt == "int8":
            int8_outputs[rt] = sr
    return {"rows": rows, "measurements": measure_verification(rows, int8_outputs)}


def markdown(report: dict) -> str:
    cols = [("format", "format", None), ("runtime", "runtime", None), ("status", "status", None), ("size_kb", "size (KB)", 1),
            ("psnr", "PSNR (dB)", 2), ("ssim", "SSIM", 4), ("psnr_vs_fp32", "PSNR vs fp32 (dB)", 2),
            ("agreement", "agreement", 3), ("ms_1t", "ms/face 1 thr", 2), ("ms_2t", "ms/face 2 thr", 2)]
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in report["rows"]:
        cells = []
        for key, _, digits in cols:
            v = r.get(key)
            cells.append("–" if v is None else (f"{v:.{digits}f}" if digits is not None else str(v)))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| gate | passed | value |", "|---|---|---|"]
    lines += [f"| {k} | {'yes' if g['passed'] else '**NO**'} | {g['value']} |" for k, g in report["gates"].items()]
    return "\n".join(lines)
