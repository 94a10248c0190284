"""convert/edgetpu.py with and without ``edgetpu_compiler``.

The compiler is an x86-64 Debian package from Coral's own apt repository, which this machine cannot
reach, so the "compiler absent" path runs for real and the "present" path runs with a stand-in
executable on PATH that behaves as the compiler does at its interface: ``-s -o DIR MODEL`` writes
``DIR/<stem>_edgetpu.tflite`` and prints its report. The reports below follow the real compiler's
printed format (v16.0.384591198: coral.ai/docs/edgetpu/compiler and published compile logs, e.g.
the README of dbro/frigate-detector-edgetpu-yolo9 and google-coral/tutorials' compile notebook);
their numbers are for this project's SR model (40 of 41 ops mapped, DEPTH_TO_SPACE on the CPU).
"""

from __future__ import annotations

import shutil
import stat
import sys
from pathlib import Path

import pytest

from edge_affectsr.convert.edgetpu import (COMPILED_FILE, compile_for_edgetpu, compiler_available, edgetpu_report,
                                           parse_compiler_log)
from edge_affectsr.convert.formats import select
from edge_affectsr.convert.tflite_inspect import inspect_tflite
from edge_affectsr.errors import UserError

from device_bundle import require_bundle

PARTLY_MAPPED = """\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 412 ms.

Input model: {model}
Input size: 140.01KiB
Output model: {stem}_edgetpu.tflite
Output size: 301.27KiB
On-chip memory used for caching model parameters: 139.50KiB
On-chip memory remaining for caching model parameters: 7.59MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 41
Operation log: {stem}_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will \
instead run on the CPU, which is slower. If possible, consider updating your model to use only operations supported \
by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 40
Number of operations that will run on CPU: 1

Operator                       Count      Status

FULLY_CONNECTED                7          Mapped to Edge TPU
ADD                            10         Mapped to Edge TPU
TRANSPOSE                      6          Mapped to Edge TPU
CONV_2D                        12         Mapped to Edge TPU
DEPTH_TO_SPACE                 1          Operation not supported
CONCATENATION                  1          Mapped to Edge TPU
Compilation child process completed within timeout period.
Compilation succeeded! 
"""

ALL_MAPPED = """\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 35 ms.

Input model: fer_int8.tflite
Input size: 97.99KiB
Output model: fer_int8_edgetpu.tflite
Output size: 181.23KiB
On-chip memory used for caching model parameters: 2.50MiB
On-chip memory remaining for caching model parameters: 5.48MiB
Off-chip memory used for streaming uncached model parameters: 1.25MiB
Number of Edge TPU subgraphs: 2
Total number of operations: 29
Operation log: fer_int8_edgetpu.log
See the operation log file for individual operation details.
Compilation child process completed within timeout period.
Compilation succeeded! 
"""

FAILED = """\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.
ERROR: Encountered unresolved custom op: Atan.
ERROR: Node number 1 (Atan) failed to prepare.

Compilation failed: Model failed in Tflite interpreter. Please ensure model can be loaded/run in Tflite interpreter.
Compilation child process completed within timeout period.
Compilation failed! 
"""


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


def _standin_compiler(folder: Path, log: str, exit_code: int = 0) -> None:
    """An ``edgetpu_compiler`` on PATH with the real one's interface (see the module docstring)."""
    folder.mkdir(exist_ok=True)
    script = folder / "edgetpu_compiler"
    script.write_text(f"#!{sys.executable}\n" + f"""
import shutil, sys
from pathlib import Path
args = sys.argv[1:]
out, model = Path(args[args.index("-o") + 1]), Path(args[-1])
if {exit_code} == 0:
    shutil.copy(model, out / (model.stem + "_edgetpu.tflite"))
print({log!r}.format(model=model.name, stem=model.stem))
sys.exit({exit_code})
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_without_the_compiler_the_bundle_says_so_and_keeps_the_rules_report(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no edgetpu_compiler here (nor anywhere on this machine)
    assert not compiler_available()
    assert "sr_edgetpu" not in [f.key for f in select("edgetpu")]
    report = edgetpu_report(inspect_tflite(require_bundle() / "sr_int8.tflite"))
    assert report["compiler"] is None and report["compiled_model"] is None and not report["compiler_available"]
    assert "edgetpu_compiler was not on PATH" in report["compiler_note"] and COMPILED_FILE in report["compiler_note"]
    assert [o["op"] for o in report["ops_on_cpu"]] == ["DEPTH_TO_SPACE"]  # today's rules report, unchanged


def test_with_the_compiler_the_compiled_model_and_its_report_land_beside_sr_int8(monkeypatch, tmp_path):
    _standin_compiler(tmp_path / "bin", PARTLY_MAPPED)
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
    _standin_compiler(tmp_path / "bin", FAILED, exit_code=1)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}")
    with pytest.raises(UserError, match=r"(?s)edgetpu_compiler failed on sr_int8.tflite \(exit 1\).*unresolved custom op"):
        compile_for_edgetpu(require_bundle() / "sr_int8.tflite", tmp_path / COMPILED_FILE)
    assert not (tmp_path / COMPILED_FILE).exists()
