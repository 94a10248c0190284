"""Edge TPU compatibility: the documented rules checked op by op, and ``edgetpu_compiler``'s own
report when it is installed (it is not in Debian's archive, so usually only the rule check runs).

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

RULES = yaml.safe_load((Path(__file__).parent / "edgetpu_rules.yaml").read_text())
SUPPORTED = set(RULES["supported_ops"])
QUANT_TYPES = {"int8", "uint8"}


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


def compiler_report(tflite: Path) -> dict | None:
    """Run ``edgetpu_compiler`` when it is on PATH and parse its op table; None when it is absent."""
    exe = shutil.which("edgetpu_compiler")
    if not exe:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([exe, "-s", "-o", tmp, str(tflite)], capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    ops = re.findall(r"^(\w+)\s+(\d+)\s+(.+)$", text, flags=re.M)
    return {
        "returncode": proc.returncode,
        "ops": [{"op": o, "count": int(c), "status": s.strip()} for o, c, s in ops if o.isupper()],
        "subgraphs": int(m.group(1)) if (m := re.search(r"Number of Edge TPU subgraphs:\s*(\d+)", text)) else None,
        "on_chip_memory": m.group(1) if (m := re.search(r"On-chip memory used for caching model parameters:\s*(.+)", text)) else None,
        "off_chip_memory": m.group(1) if (m := re.search(r"Off-chip memory used for streaming uncached model parameters:\s*(.+)", text)) else None,
        "log": text[-4000:],
    }


def edgetpu_report(model: ModelInfo) -> dict:
    report = rule_report(model)
    report["compiler"] = compiler_report(model.path)
    report["compiler_available"] = report["compiler"] is not None
    return report
