"""convert/edgetpu.py with and without ``edgetpu_compiler``: the "absent" path for real (it is absent
here), the "present" path with the stand-in of tests/edgetpu_standin.py, the reports in the real
compiler's printed format."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge_affectsr.convert.edgetpu import (COMPILED_FILE, compile_for_edgetpu, compiler_available, edgetpu_report,
                                           parse_compiler_log)
from edge_affectsr.convert.formats import select
from edge_affectsr.convert.tflite_inspect import inspect_tflite
from edge_affectsr.errors import UserError

from device_bundle import require_bundle
from edgetpu_standin import ALL_MAPPED, FAILED, PARTLY_MAPPED, install_standin_compiler, path_without_compiler


def test_a_partly_mapped_report_is_parsed():
    report = parse_compiler_log(PARTLY_MAPPED.format(model="sr_int8.tflite", stem="sr_int8"))
    assert {k: v for k, v in report.items() if k != "operators"} == {
        "version": "16.0.384591198", "subgraphs": 1, "ops_total": 41, "ops_on_edgetpu": 40, "ops_on_cpu": 1,
        "on_chip_memory_bytes": round(139.5 * 1024), "on_chip_remaining_bytes": round(7.59 * 2**20),
        "off_chip_memory_bytes": 0}
    assert len(report["operators"]) == 6 and report["operators"][0] == {
        "op": "FULLY_CONNECTED", "count": 7, "status": "Mapped to Edge TPU", "edgetpu": True}
    assert [r for r in report["operators"] if not r["edgetpu"]] == [
        {"op": "DEPTH_TO_SPACE", "count": 1, "status": "Operation not supported", "edgetpu": False}]


def test_a_report_without_the_cpu_lines_means_every_op_mapped():
    report = parse_compiler_log(ALL_MAPPED)
    assert (report["ops_total"], report["ops_on_edgetpu"], report["ops_on_cpu"]) == (29, 29, 0)
    assert (report["subgraphs"], report["off_chip_memory_bytes"]) == (2, round(1.25 * 2**20))
    assert report["operators"] == []  # printed without -s: no table


def test_without_the_compiler_the_bundle_says_so_and_keeps_the_rules_report(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", path_without_compiler())
    assert not compiler_available()
    assert "sr_edgetpu" not in [f.key for f in select("edgetpu")]
    report = edgetpu_report(inspect_tflite(require_bundle() / "sr_int8.tflite"))
    assert report["compiler"] is None and report["compiled_model"] is None and not report["compiler_available"]
    assert "edgetpu_compiler was not on PATH" in report["compiler_note"] and COMPILED_FILE in report["compiler_note"]
    assert [o["op"] for o in report["ops_on_cpu"]] == ["DEPTH_TO_SPACE"]  # today's rules report, unchanged


def test_with_the_compiler_the_compiled_model_and_its_report_land_beside_sr_int8(monkeypatch, tmp_path):
    install_standin_compiler(tmp_path / "bin", PARTLY_MAPPED)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}")
    assert compiler_available() and "sr_edgetpu" in [f.key for f in select("edgetpu")]
    stage = tmp_path / "stage"
    stage.mkdir()
    sr_int8 = Path(shutil.copy(require_bundle() / "sr_int8.tflite", stage / "sr_int8.tflite"))
    compiled = compile_for_edgetpu(sr_int8, stage / COMPILED_FILE)
    assert compiled == stage / COMPILED_FILE and compiled.is_file()
    assert "Number of Edge TPU subgraphs: 1" in compiled.with_suffix(".log").read_text()
    report = edgetpu_report(inspect_tflite(sr_int8))
    assert report["compiled_model"] == COMPILED_FILE and report["compiler"]["ops_on_edgetpu"] == 40
    assert "compiler_note" not in report


def test_a_failing_compile_is_an_error_with_its_last_lines(monkeypatch, tmp_path):
    install_standin_compiler(tmp_path / "bin", FAILED, exit_code=1)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}")
    with pytest.raises(UserError, match=r"(?s)edgetpu_compiler failed on sr_int8.tflite \(exit 1\).*unresolved custom"):
        compile_for_edgetpu(require_bundle() / "sr_int8.tflite", tmp_path / COMPILED_FILE)
    assert not (tmp_path / COMPILED_FILE).exists()
