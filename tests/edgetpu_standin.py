"""A stand-in for ``edgetpu_compiler`` (Coral's x86-64 apt package, which this machine cannot reach),
for the tests of ``convert --target edgetpu``: an executable on PATH with the real compiler's
interface (``-s -o DIR MODEL`` writes ``DIR/<stem>_edgetpu.tflite``, a copy of the model here, and
prints its report). The reports follow the real compiler's printed format, v16.0.384591198, as
published compile logs show it (the ``-s`` operator table: the README of
dbro/frigate-detector-edgetpu-yolo9; the summary lines and a failed compile: logs quoted in other
public repositories); their numbers are this project's SR model's (40 of 41 ops mapped,
DEPTH_TO_SPACE on the CPU), not a real compile's."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

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


def install_standin_compiler(folder: Path, log: str, exit_code: int = 0) -> None:
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


def path_without_compiler() -> str:
    """``$PATH`` less any folder holding a real ``edgetpu_compiler`` (for the "absent" tests)."""
    return os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and not (Path(d) / "edgetpu_compiler").exists())
