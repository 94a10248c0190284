"""Edge TPU compatibility: the documented rules checked op by op, and, when ``edgetpu_compiler`` is
installed (Coral's apt repository, x86-64 only; not in Debian's archive, so often only the rule
check runs), the compiled model and the compiler's own report, parsed.

The Edge TPU runs a prefix of the graph: from the first op it cannot map, everything runs on the
CPU. So the report names, for each op, whether it maps and, if not, why.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from edge_affectsr.convert.tflite_inspect import ModelInfo
from edge_affectsr.errors import UserError

RULES = yaml.safe_load((Path(__file__).parent / "edgetpu_rules.yaml").read_text())
SUPPORTED = set(RULES["supported_ops"])
QUANT_TYPES = {"int8", "uint8"}
COMPILER = "edgetpu_compiler"
COMPILED_FILE = "sr_int8_edgetpu.tflite"  # in the bundle, with the compiler's printed report as .log beside it
MAPPED = "Mapped to Edge TPU"
MEMORY_LABELS = {
    "on_chip_memory_bytes": "On-chip memory used for caching model parameters",
    "on_chip_remaining_bytes": "On-chip memory remaining for caching model parameters",
    "off_chip_memory_bytes": "Off-chip memory used for streaming uncached model parameters",
}


def _shape_problem(shape: tuple[int, ...]) -> str | None:
    if any(d <= 0 for d in shape):
        return f"dynamic shape {list(shape)}"
    big = [d for d in shape[:-3] if d > 1]
    if big:
        return f"tensor {list(shape)}: more than 3 dimensions larger than 1"
    return None


def constant_tensors(model: ModelInfo) -> set[int]:
    """Weights and biases: tensors no op produces and that are not model inputs. The rank rule
    is about activations; conv filters are 4-D by definition."""
    produced = {i for op in model.ops for i in op.outputs}
    return {i for op in model.ops for i in op.inputs if i not in produced} - {t.index for t in model.inputs}


def op_problems(model: ModelInfo, op, constants: set[int]) -> list[str]:
    """Why one op cannot run on the Edge TPU (empty: it can)."""
    problems = []
    if op.name not in SUPPORTED:
        problems.append(RULES["unsupported_notes"].get(op.name, f"{op.name} is not a supported Edge TPU op"))
    for idx in op.inputs + op.outputs:
        t = model.tensors.get(idx)
        if t is None:
            continue
        is_bias = t.dtype == "int32" and len(t.shape) == 1
        if t.dtype not in QUANT_TYPES and not is_bias:
            problems.append(f"tensor {t.name} is {t.dtype}, not 8-bit")
        shape_issue = None if idx in constants else _shape_problem(t.shape)
        if shape_issue:
            problems.append(shape_issue)
    return problems


def rule_report(model: ModelInfo) -> dict:
    """Per-op mapping under the documented rules, honouring 'first unmapped op and all after it'."""
    rows, cpu_from, constants = [], None, constant_tensors(model)
    for op in model.ops:
        problems = op_problems(model, op, constants)
        if problems and cpu_from is None:
            cpu_from = op.index
        on_tpu = cpu_from is None
        rows.append({"index": op.index, "op": op.name, "edgetpu": on_tpu,
                     "why_cpu": "; ".join(problems) if problems else ("after an unmapped op" if not on_tpu else "")})
    mapped = sum(r["edgetpu"] for r in rows)
    return {"ops_total": len(rows), "ops_mapped": mapped, "ops_on_cpu": [r for r in rows if not r["edgetpu"]], "ops": rows}


def compiler_available() -> bool:
    """``edgetpu_compiler`` is on PATH (Coral's apt repository; x86-64 Linux only)."""
    return shutil.which(COMPILER) is not None


def _bytes(size: str) -> int:
    """``322.25KiB`` / ``2.98MiB`` / ``0.00B`` (the compiler's sizes) -> bytes."""
    number, unit = re.fullmatch(r"([\d.]+)\s*([KMG]i)?B", size.strip()).groups()
    return round(float(number) * {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}[unit])


def _field(text: str, label: str) -> str | None:
    found = re.search(rf"^{re.escape(label)}:\s*(.+?)\s*$", text, flags=re.M)
    return found.group(1) if found else None


def parse_compiler_log(text: str) -> dict:
    """What ``edgetpu_compiler -s`` printed, as numbers: version, subgraphs, how many ops run on the
    Edge TPU and on the CPU, on-chip (cached) and off-chip (streamed) parameter memory in bytes,
    and the operator table (one row per op and status; an op can have rows on both sides).

    The format (compiler v15/v16) is its plain-text report: ``Label: value`` lines, then, when not
    every op maps, ``Number of operations that will run on Edge TPU: N`` / ``... on CPU: M``, then
    the ``Operator  Count  Status`` table. Without those two lines every op was mapped."""
    total = _field(text, "Total number of operations")
    on_tpu, on_cpu = (_field(text, f"Number of operations that will run on {where}") for where in ("Edge TPU", "CPU"))
    rows = []
    header = re.search(r"^Operator\s+Count\s+Status\s*$", text, flags=re.M)
    for line in text[header.end():].splitlines() if header else []:
        row = re.fullmatch(r"([A-Z][A-Z0-9_]*)\s+(\d+)\s+(\S.*?)\s*", line)
        if row:
            rows.append({"op": row[1], "count": int(row[2]), "status": row[3], "edgetpu": row[3] == MAPPED})
        elif rows and line.strip():  # the table ends at the first line that is not a row
            break
    memory = {key: _field(text, label) for key, label in MEMORY_LABELS.items()}
    version = re.search(r"Edge TPU Compiler version (\S+)", text)
    subgraphs = _field(text, "Number of Edge TPU subgraphs")
    return {
        "version": version.group(1) if version else None,
        "subgraphs": int(subgraphs) if subgraphs else None,
        "ops_total": int(total) if total else None,
        "ops_on_edgetpu": int(on_tpu) if on_tpu else (int(total) if total else None),
        "ops_on_cpu": int(on_cpu) if on_cpu else (0 if total else None),
        **{key: _bytes(value) if value else None for key, value in memory.items()},
        "operators": rows,
    }


def compile_for_edgetpu(tflite: Path, out: Path, timeout_s: float = 600) -> Path:
    """Compile ``tflite`` to ``out`` with ``edgetpu_compiler -s``; what it printed goes beside it as
    ``out`` with ``.log`` (the bundle keeps and hashes both). UserError, with the compiler's last
    lines, when it fails or writes no model."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            proc = subprocess.run([COMPILER, "-s", "-o", tmp, str(tflite)], capture_output=True, text=True,
                                  timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise UserError(f"{COMPILER} could not run on {tflite.name}: {e}") from None
        text = proc.stdout + proc.stderr
        compiled = Path(tmp) / f"{tflite.stem}_edgetpu.tflite"
        if proc.returncode != 0 or not compiled.is_file():
            tail = "\n".join(text.strip().splitlines()[-15:])
            raise UserError(f"{COMPILER} failed on {tflite.name} (exit {proc.returncode}):\n{tail}")
        shutil.move(str(compiled), out)
    out.with_suffix(".log").write_text(text)
    return out


def edgetpu_report(model: ModelInfo) -> dict:
    """The documented-rules report on ``model`` (sr_int8) plus, when the bundle holds the compiled
    model (``COMPILED_FILE`` beside it: the compiler was on PATH), the compiler's parsed report;
    else ``compiler`` is None and ``compiler_note`` says why there is no compiled model."""
    report = rule_report(model)
    log_file = (model.path.parent / COMPILED_FILE).with_suffix(".log")
    report["compiler"] = parse_compiler_log(log_file.read_text()) if log_file.is_file() else None
    report["compiled_model"] = COMPILED_FILE if log_file.is_file() else None
    report["compiler_available"] = report["compiler"] is not None
    if report["compiler"] is None:
        report["compiler_note"] = (f"{COMPILER} was not on PATH (Coral's apt package, x86-64 Linux only): no "
                                   f"{COMPILED_FILE}; the Edge TPU mapping above is from the documented rules")
    return report
