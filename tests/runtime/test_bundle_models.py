"""edge_affectsr/runtime/bundle_models.py: a real bundle loads and self-tests; tampered, newer and broken bundles are refused.

Needs a bundle: ``$EDGE_AFFECTSR_TEST_BUNDLE`` or the shipped ``bundle-x4`` (skipped otherwise).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from edge_affectsr.bundle import BundleError, sha256_file
from edge_affectsr.errors import UserError
from edge_affectsr.runtime.bundle_models import SelfTestError, default_bundle_path, load_bundle
from edge_affectsr.runtime.interpreter import InterpreterConfig

from device_bundle import copy_bundle, require_bundle

CPU = InterpreterConfig(delegate_order=["cpu"])


def _rewrite_manifest(bundle: Path, change) -> None:
    path = bundle / "manifest.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def test_a_bundle_loads_and_passes_its_self_test(caplog):
    with caplog.at_level(logging.INFO, logger="edge_affectsr.runtime.bundle_models"):
        bundle = load_bundle(require_bundle(), CPU)
    assert bundle.sr.lr_size * bundle.sr.scale == bundle.sr.runner.out_size == 128
    assert bundle.sr.runner.num_landmarks == len(bundle.nodes) and np.array_equal(bundle.sr.nodes, bundle.nodes)
    result = bundle.self_test()
    assert result.passed and result.psnr_db >= result.min_psnr_db
    lines = [r.getMessage() for r in caplog.records if r.name == "edge_affectsr.runtime.bundle_models"]
    assert len(lines) == 1 and "delegate cpu" in lines[0] and "self-test" in lines[0]


def test_a_tampered_model_is_refused_naming_the_file(tmp_path: Path):
    bundle = copy_bundle(tmp_path / "b")
    model = bundle / "sr_int8.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"sr_int8\.tflite does not match its sha256"):
        load_bundle(bundle, CPU)


def test_a_newer_schema_is_refused(tmp_path: Path):
    bundle = copy_bundle(tmp_path / "b")
    _rewrite_manifest(bundle, lambda doc: doc.update(schema_version=99))
    with pytest.raises(BundleError, match="schema 99 is newer"):
        load_bundle(bundle, CPU)


def test_a_wrong_golden_output_fails_the_self_test(tmp_path: Path):
    """A bundle whose hashes are right but whose model does not give the expected output (what a
    miscomputing delegate looks like) is refused by the self-test."""
    bundle = copy_bundle(tmp_path / "b")
    golden = bundle / "golden_sr.npy"
    expected = np.load(golden)
    np.save(golden, (255 - expected).astype(expected.dtype))
    _rewrite_manifest(bundle, lambda doc: doc["files"].update({"golden_sr.npy": sha256_file(golden)}))
    with pytest.raises(SelfTestError, match="self-test failed on delegate cpu"):
        load_bundle(bundle, CPU)
    assert load_bundle(bundle, CPU, self_test=False).name  # loading alone still works


def test_a_manifest_without_a_device_model_is_refused(tmp_path: Path):
    bundle = copy_bundle(tmp_path / "b")
    _rewrite_manifest(bundle, lambda doc: doc["models"].pop("fer_int8"))
    with pytest.raises(BundleError, match="no fer_int8 model"):
        load_bundle(bundle, CPU)


def test_a_missing_delegate_library_falls_back_and_is_logged(caplog):
    cfg = InterpreterConfig(delegate_order=["edgetpu", "gpu", "cpu"],
                            delegate_libraries={"gpu": ["/nonexistent/libtensorflowlite_gpu_delegate.so"]})
    with caplog.at_level(logging.INFO):
        bundle = load_bundle(require_bundle(), cfg)
    choice = bundle.delegate
    assert choice.delegate == "cpu" and choice.fell_back
    assert [a.delegate for a in choice.attempts] == ["edgetpu", "gpu", "cpu"]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "edgetpu failed: OSError" in text and "/nonexistent/libtensorflowlite_gpu_delegate.so" in text
    assert "edgetpu failed" in bundle.describe()
    # the other models never try an accelerator
    assert bundle.critic.model.choice.attempts[0].delegate == "cpu"


def test_without_a_shipped_bundle_the_error_says_to_pass_model():
    try:
        path = default_bundle_path()
    except UserError as e:
        assert "--model" in str(e) and "bundle-x4" in str(e)
    else:
        assert (path / "manifest.json").is_file()
