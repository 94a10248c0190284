"""The verification gates as data: each gate is a record (name, metric, comparison, threshold,
description), the measurements name the metric they measure, and one function (:func:`evaluate`)
judges them all. ``convert`` writes no bundle when any gate fails.

Why these gates:
- int8 PSNR within 0.3 dB and expression agreement within 2 points of torch fp32, on every
  runtime: post-training quantisation must not cost visible quality or expressions (the shipped
  bundle loses 0.05 dB and no agreement, docs/conversion.md).
- every pair of runtimes agrees on the int8 output (PSNR >= 45 dB): a runtime that miscomputes an
  op is caught (ai-edge-litert 2.1.0's int8 BATCH_MATMUL gave 34 dB against torch where the others
  gave 52: shared/notes/toolchain.md).
- every verified format loads and runs on every installed runtime.
- no TRANSPOSE or RESHAPE of rank > 4: 6-D shuffles break GPU delegates and the Edge TPU.
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from edge_affectsr import metrics
from edge_affectsr.convert.tflite_inspect import ModelInfo

COMPARISONS = {"<=": operator.le, ">=": operator.ge}


@dataclass(frozen=True)
class Gate:
    """A pass/fail bar on one metric. ``description`` is the report's line for one measurement:
    a template taking ``{subject}`` (what was measured: a runtime, a pair of runtimes),
    ``{threshold}`` and ``{points}`` (the threshold x 100)."""

    name: str
    metric: str
    comparison: str  # a key of COMPARISONS: value <comparison> threshold passes
    threshold: float
    description: str

    def label(self, subject: str) -> str:
        return self.description.format(subject=subject, threshold=self.threshold, points=self.threshold * 100)

    def passes(self, value: float) -> bool:
        return bool(COMPARISONS[self.comparison](value, self.threshold))


@dataclass(frozen=True)
class Measurement:
    """One measured value of a gate's metric; ``shown`` is what the report prints (rounded, or
    the list of offenders behind a count)."""

    metric: str
    value: float
    subject: str = ""
    shown: float | str | None = None


GATES: tuple[Gate, ...] = (
    Gate("int8_psnr", "int8_psnr_drop_db", "<=", 0.3, "int8 PSNR within {threshold:g} dB of fp32 ({subject})"),
    Gate("int8_agreement", "int8_agreement_drop", "<=", 0.02,
         "int8 agreement within {points:.0f} points of fp32 ({subject})"),
    Gate("runtimes_agree", "int8_runtime_pair_psnr_db", ">=", 45.0,
         "int8 outputs agree, {subject} (PSNR >= {threshold:.0f} dB)"),
    Gate("all_run", "failed_runs", "<=", 0, "every format runs on every installed runtime"),
    Gate("structure", "rank_over_4_shuffles", "<=", 0, "no TRANSPOSE/RESHAPE of rank > 4"),
)


def evaluate(measurements: Iterable[Measurement], gates: Iterable[Gate] | None = None) -> dict[str, dict]:
    """``{label: {"passed", "value"}}`` in measurement order; ``gates`` defaults to :data:`GATES`
    (read at call time). A measurement whose metric no gate judges is a programming error."""
    by_metric = {g.metric: g for g in (GATES if gates is None else gates)}
    results = {}
    for m in measurements:
        gate = by_metric[m.metric]
        results[gate.label(m.subject)] = {"passed": gate.passes(m.value), "value": m.value if m.shown is None else m.shown}
    return results


def _mean_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean PSNR over faces ``[n, H, W, 3]``, identical faces counted as 99 dB."""
    return float(np.mean([min(metrics.psnr(x, y), 99.0) for x, y in zip(a, b)]))


def measure_verification(rows: list[dict], int8_outputs: dict[str, np.ndarray]) -> list[Measurement]:
    """From the verification table (``rows[0]`` is torch fp32) and the int8 outputs per runtime
    (uint8 ``[n, H, W, 3]``): the int8 drops per runtime, the agreement of each runtime pair, and
    the runs that failed."""
    fp32, out = rows[0], []
    for r in rows:
        if r["format"] == "int8" and r["status"] == "ok":
            # rounded: agreement is a share of faces, and 0.875 - 0.855 must be 2 points, not 2.0000000001
            drop, agree = round(fp32["psnr"] - r["psnr"], 9), round(fp32["agreement"] - r["agreement"], 9)
            out += [Measurement("int8_psnr_drop_db", drop, r["runtime"], round(drop, 3)),
                    Measurement("int8_agreement_drop", agree, r["runtime"], round(agree, 4))]
    for a, b in itertools.combinations(sorted(int8_outputs), 2):
        p = _mean_psnr(int8_outputs[a], int8_outputs[b])
        out.append(Measurement("int8_runtime_pair_psnr_db", p, f"{a} vs {b}", round(p, 2)))
    failed = [f"{r['format']}/{r['runtime']}" for r in rows if r["status"] != "ok"]
    out.append(Measurement("failed_runs", len(failed), shown=", ".join(failed) or "all ran"))
    return out


def measure_structure(models: Iterable[ModelInfo]) -> list[Measurement]:
    """TRANSPOSE and RESHAPE ops whose first input or an output has rank > 4, over all models."""
    bad = []
    for info in models:
        for op in info.ops:
            if op.name in ("TRANSPOSE", "RESHAPE"):
                ranks = [len(info.tensors[i].shape) for i in op.inputs[:1] + op.outputs if i in info.tensors]
                if max(ranks, default=0) > 4:
                    bad.append(f"{info.path.name}: {op.name} #{op.index} rank {max(ranks)}")
    return [Measurement("rank_over_4_shuffles", len(bad), shown="; ".join(bad) or "none")]
