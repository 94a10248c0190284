"""The gates as data: each one fails on synthetic verification rows made to break it, alone."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge_affectsr.convert.gates import GATES, evaluate, measure_structure, measure_verification
from edge_affectsr.convert.tflite_inspect import ModelInfo, OpInfo, TensorInfo

RUNTIMES = ("ai-edge-litert", "tflite-runtime")


def _row(fmt: str, runtime: str, psnr: float = 30.0, agreement: float = 0.9, status: str = "ok") -> dict:
    return {"format": fmt, "runtime": runtime, "status": status, "psnr": psnr, "agreement": agreement}


def _model(rank: int) -> ModelInfo:
    """One TRANSPOSE whose tensors have ``rank`` dimensions."""
    shape = (1,) * (rank - 2) + (8, 8)
    tensors = {i: TensorInfo(i, f"t{i}", shape, "int8", 0.1, 0) for i in (0, 1)}
    return ModelInfo(Path("sr_int8.tflite"), 0, [OpInfo(3, "TRANSPOSE", [0], [1])], tensors)


def _case(break_gate: str | None = None):
    """Synthetic rows (torch fp32 + int8 on two runtimes + fp16), int8 outputs and one model,
    all passing except the gate named ``break_gate``."""
    rows = [_row("torch-fp32", "torch")] + [_row("int8", rt, psnr=29.9, agreement=0.89) for rt in RUNTIMES]
    rows.append(_row("fp16", "ai-edge-litert"))
    face = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    outputs = {rt: face.copy() for rt in RUNTIMES}
    model = _model(rank=4)
    if break_gate == "int8_psnr":
        rows[2]["psnr"] = 29.5  # 0.5 dB below fp32
    elif break_gate == "int8_agreement":
        rows[2]["agreement"] = 0.85  # 5 points below fp32
    elif break_gate == "runtimes_agree":
        outputs["tflite-runtime"] = 255 - face
    elif break_gate == "all_run":
        rows[3]["status"] = "failed: RuntimeError: no kernel"
    elif break_gate == "structure":
        model = _model(rank=6)
    return measure_verification(rows, outputs) + measure_structure([model])


def test_the_synthetic_rows_pass_every_gate():
    results = evaluate(_case())
    assert results and all(r["passed"] for r in results.values())
    assert results["int8 PSNR within 0.3 dB of fp32 (ai-edge-litert)"]["value"] == 0.1
    assert results["int8 agreement within 2 points of fp32 (tflite-runtime)"]["value"] == 0.01
    assert results["int8 outputs agree, ai-edge-litert vs tflite-runtime (PSNR >= 45 dB)"]["value"] == 99.0
    assert results["every format runs on every installed runtime"]["value"] == "all ran"
    assert results["no TRANSPOSE/RESHAPE of rank > 4"]["value"] == "none"


@pytest.mark.parametrize("gate", [g.name for g in GATES])
def test_each_gate_fails_alone_when_broken(gate):
    measurements = _case(gate)
    judged_by = {g.metric: g.name for g in GATES}
    failed = {k for k, r in evaluate(measurements).items() if not r["passed"]}
    broken = next(g for g in GATES if g.name == gate)
    assert failed and failed <= {broken.label(m.subject) for m in measurements if judged_by[m.metric] == gate}


def test_failures_show_what_failed():
    results = evaluate(_case("all_run") + _case("structure")[-1:])
    assert results["every format runs on every installed runtime"]["value"] == "fp16/ai-edge-litert"
    assert results["no TRANSPOSE/RESHAPE of rank > 4"]["value"] == "sr_int8.tflite: TRANSPOSE #3 rank 6"


def test_thresholds_are_data():
    loose = [replace(g, threshold=1.0) if g.name == "int8_psnr" else g for g in GATES]
    results = evaluate(_case("int8_psnr"), loose)
    assert all(r["passed"] for r in results.values())
    assert "int8 PSNR within 1 dB of fp32 (ai-edge-litert)" in results


def test_a_drop_of_exactly_the_threshold_passes_despite_float_error():
    """0.875 - 0.855 is 0.020000000000000018 in floats: 4 faces of 200 flipping is 2 points and must
    pass "within 2 points" (a routed bundle's conversion was refused by this once)."""
    rows = [_row("torch-fp32", "torch", agreement=0.875), _row("int8", "tflite-runtime", agreement=0.855)]
    gates = evaluate(measure_verification(rows, {}))
    assert gates["int8 agreement within 2 points of fp32 (tflite-runtime)"]["passed"]
    rows[1]["agreement"] = 0.85
    assert not evaluate(measure_verification(rows, {}))["int8 agreement within 2 points of fp32 (tflite-runtime)"]["passed"]
