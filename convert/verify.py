"""The proof that a conversion kept quality and expressions: every format on every installed
runtime, scored against HR, against the torch fp32 output, and against each other, plus gates.

Like Ultralytics' export benchmark, with expression fidelity added.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edge_affectsr.convert.runners import OnnxRunner, run_all
from edge_affectsr.distill.archs.fer_critic import FERCritic
from edge_affectsr.distill.data.dataset import to_tensor_image, to_uint8_image
from edge_affectsr.distill.evaluate import critic_probs
from edge_affectsr import metrics
from edge_affectsr.tflite_runtime import available_runtimes
from edge_affectsr.tflite_sr import TFLiteRunner

log = logging.getLogger(__name__)
GATES = {"int8_psnr_drop_db": 0.3, "int8_agreement_drop": 0.02, "runtime_pair_psnr_db": 45.0}


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
    """(format, runtime, factory(threads)) for every format x installed runtime."""
    for fmt in ("int8", "fp16"):
        for rt in available_runtimes():
            yield fmt, rt, (lambda threads, f=files[fmt], r=rt: TFLiteRunner.open(f, r, threads))
    yield "onnx", "onnxruntime", (lambda threads: OnnxRunner(files["onnx"], threads))


def verify(files: dict[str, Path], student, critic: FERCritic, lr: np.ndarray, lm: np.ndarray, hr: np.ndarray) -> dict:
    """Rows for the table, the int8 outputs per runtime, and the gate results."""
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
    return {"rows": rows, "gates": gates(rows, int8_outputs)}


def gates(rows: list[dict], int8_outputs: dict[str, np.ndarray]) -> dict:
    fp32 = rows[0]
    results = {}
    for r in rows:
        if r["format"] != "int8" or r["status"] != "ok":
            continue
        drop = fp32["psnr"] - r["psnr"]
        results[f"int8 PSNR within {GATES['int8_psnr_drop_db']} dB of fp32 ({r['runtime']})"] = (drop <= GATES["int8_psnr_drop_db"], round(drop, 3))
        agree = fp32["agreement"] - r["agreement"]
        results[f"int8 agreement within {GATES['int8_agreement_drop'] * 100:.0f} points of fp32 ({r['runtime']})"] = (agree <= GATES["int8_agreement_drop"], round(agree, 4))
    for a, b in itertools.combinations(sorted(int8_outputs), 2):
        p = float(np.mean([min(metrics.psnr(x, y), 99.0) for x, y in zip(int8_outputs[a], int8_outputs[b])]))
        results[f"int8 outputs agree, {a} vs {b} (PSNR >= {GATES['runtime_pair_psnr_db']:.0f} dB)"] = (p >= GATES["runtime_pair_psnr_db"], round(p, 2))
    failed_runs = [f"{r['format']}/{r['runtime']}" for r in rows if r["status"] != "ok"]
    results["every format runs on every installed runtime"] = (not failed_runs, ", ".join(failed_runs) or "all ran")
    return {k: {"passed": bool(ok), "value": v} for k, (ok, v) in results.items()}


def structure_gate(models) -> dict:
    """No TRANSPOSE or RESHAPE of rank > 4 anywhere (6-D shuffles break GPU delegates and the TPU)."""
    bad = []
    for info in models:
        for op in info.ops:
            if op.name in ("TRANSPOSE", "RESHAPE"):
                ranks = [len(info.tensors[i].shape) for i in op.inputs[:1] + op.outputs if i in info.tensors]
                if max(ranks, default=0) > 4:
                    bad.append(f"{info.path.name}: {op.name} #{op.index} rank {max(ranks)}")
    return {"no TRANSPOSE/RESHAPE of rank > 4": {"passed": not bad, "value": "; ".join(bad) or "none"}}


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
