"""A bundle with an Edge TPU model (``sr_edgetpu``, from ``convert`` where ``edgetpu_compiler`` is
installed): the loader runs it while the Edge TPU delegate loads, and states the fallback to
sr_int8 when the delegate does not (no Coral here: libedgetpu.so.1 is absent, for real).

The "delegate loads" case needs a delegate library that loads: a minimal TFLite delegate plugin
(the ``tflite_plugin_create_delegate`` ABI libedgetpu exports) is compiled from C here; it claims
no ops, so the compiled file, here a copy of sr_int8 (a real compiled model's custom op runs only on
a Coral), runs on the CPU kernels under it. Skipped where no C compiler exists.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from edge_affectsr.bundle import MANIFEST, staging_dir, write_bundle
from edge_affectsr.runtime.bundle_models import EDGETPU_MODEL, load_bundle
from edge_affectsr.runtime.interpreter import InterpreterConfig

from device_bundle import require_bundle

COMPILED = "sr_int8_edgetpu.tflite"
NOOP_DELEGATE = r"""
#include <stdint.h>
#include <stdlib.h>
typedef struct Delegate {  /* TfLiteDelegate (tensorflow/lite/core/c/common.h) */
  void* data_;
  int (*Prepare)(void* context, struct Delegate* delegate);
  void* CopyFromBufferHandle; void* CopyToBufferHandle; void* FreeBufferHandle;
  int64_t flags;
  void* opaque_delegate_builder;
} Delegate;
static int prepare(void* context, Delegate* delegate) { return 0; }  /* kTfLiteOk, no nodes claimed */
Delegate* tflite_plugin_create_delegate(char** keys, char** values, size_t n, void (*report)(const char*)) {
  Delegate* d = calloc(1, sizeof(Delegate));
  d->Prepare = prepare;
  return d;
}
void tflite_plugin_destroy_delegate(Delegate* d) { free(d); }
"""


def bundle_with_compiled_model(out: Path) -> Path:
    """The shipped bundle plus an ``sr_edgetpu`` entry and its file, re-hashed by ``write_bundle``."""
    src = require_bundle()
    stage = staging_dir(out)
    for f in src.iterdir():
        if f.is_file() and f.name not in (MANIFEST, "manifest.sig"):
            shutil.copy(f, stage / f.name)
    shutil.copy(src / "sr_int8.tflite", stage / COMPILED)
    doc = {k: v for k, v in json.loads((src / MANIFEST).read_text()).items() if k not in ("schema_version", "files")}
    doc["models"][EDGETPU_MODEL] = {"file": COMPILED, "format": "tflite-edgetpu"}
    return write_bundle(stage, out, doc)


def test_without_the_delegate_sr_int8_runs_and_the_log_names_the_compiled_file(tmp_path, caplog):
    bundle = bundle_with_compiled_model(tmp_path / "b")
    with caplog.at_level(logging.WARNING, logger="edge_affectsr.runtime.interpreter"):
        loaded = load_bundle(bundle, InterpreterConfig(delegate_order=["edgetpu", "cpu"]))
    choice = loaded.delegate
    assert (choice.model, choice.delegate) == ("sr_int8.tflite", "cpu")
    assert choice.attempts[0].model == COMPILED and "libedgetpu.so.1" in choice.attempts[0].error
    line = next(r.getMessage() for r in caplog.records if "sr_int8.tflite" in r.getMessage())
    assert f"delegate cpu, 2 threads (edgetpu with {COMPILED} failed: OSError" in line


@pytest.fixture
def noop_delegate(tmp_path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler for the stand-in delegate library")
    (tmp_path / "noop.c").write_text(NOOP_DELEGATE)
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(tmp_path / "libnoop.so"), str(tmp_path / "noop.c")],
                   check=True, capture_output=True, timeout=120)
    return tmp_path / "libnoop.so"


def test_with_the_delegate_the_compiled_model_is_preferred(tmp_path, noop_delegate):
    cfg = InterpreterConfig(delegate_order=["edgetpu", "cpu"], delegate_libraries={"edgetpu": [str(noop_delegate)]})
    loaded = load_bundle(bundle_with_compiled_model(tmp_path / "b"), cfg)
    assert (loaded.delegate.model, loaded.delegate.delegate, loaded.delegate.fell_back) == (COMPILED, "edgetpu", False)
    assert COMPILED in loaded.describe() and loaded.self_test().passed
    # the order still rules: with the Edge TPU not wanted, the compiled file is not touched
    on_cpu = load_bundle(tmp_path / "b", cfg.model_copy(update={"delegate_order": ["cpu"]}))
    assert (on_cpu.delegate.model, on_cpu.delegate.delegate) == ("sr_int8.tflite", "cpu")
