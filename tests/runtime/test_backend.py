"""edge_affectsr/runtime/backend.py: one ``load_model`` for every kind of SR model, one call for all."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_affectsr import landmark_graph
from edge_affectsr.errors import UserError
from edge_affectsr.models import resolve_model
from edge_affectsr.runtime import backend as backend_module
from edge_affectsr.runtime.backend import BicubicBackend, TFLiteBackend, load_model, subset_for
from edge_affectsr.runtime.routing import RoutedBackend

BUNDLE = resolve_model("bundle-x4")


@pytest.fixture(scope="module")
def golden() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A batch of one: the bundle's golden LR face, its landmarks put back in the full mesh, the expected SR."""
    lr, lm, sr = (np.load(BUNDLE / f"golden_{k}.npy") for k in ("lr", "lm", "sr"))
    full = np.zeros((1, landmark_graph.NUM_LANDMARKS, 2), np.float32)
    full[0, landmark_graph.subset_nodes("contours")] = lm
    return lr[None], full, sr


def test_a_bundle_name_opens_its_int8_model_and_reproduces_the_golden_output(golden):
    lr, lm, expected = golden
    model = load_model("bundle-x4")  # routed: its sr_int8 (the golden's model) and sr_clean_int8
    assert isinstance(model, RoutedBackend) and model.name == "bundle-x4 (int8)"
    assert isinstance(model.degraded, TFLiteBackend) and isinstance(model.clean, TFLiteBackend)
    assert (model.scale, model.lr_size, model.params, model.macs) == (4, 32, None, None)
    sr = model.degraded(lr, lm, np.ones(1, bool))
    assert sr.dtype == np.uint8 and np.array_equal(sr[0], expected)
    routed = model(lr, lm, np.ones(1, bool))
    assert np.array_equal(routed, sr if model.last_routes[0] else model.clean(lr, lm, np.ones(1, bool)))


def test_a_tflite_file_finds_its_landmark_subset_from_its_input(golden):
    lr, lm, _ = golden
    model = load_model(BUNDLE / "sr_fp16.tflite", runtime="ai-edge-litert", threads=1)
    assert model.name == "bundle-x4/sr_fp16" and model.runner.model.choice.runtime == "ai-edge-litert"
    assert np.array_equal(model.nodes, landmark_graph.subset_nodes("contours"))
    assert model(lr, lm, np.ones(1, bool)).shape == (1, 128, 128, 3)


def test_bicubic_takes_any_size():
    model = load_model("bicubic", scale=4)
    assert isinstance(model, BicubicBackend) and model.lr_size is None and model.params is None
    lr = np.zeros((2, 20, 20, 3), np.uint8)
    assert model(lr, np.zeros((2, 478, 2)), np.zeros(2, bool)).shape == (2, 80, 80, 3)


def test_a_checkpoint_opens_through_the_registered_torch_backend(golden):
    pytest.importorskip("torch")
    lr, lm, _ = golden
    model = load_model("student-x4")
    assert type(model).__module__ == "edge_affectsr.distill.torch_backend"
    assert model.name == "student-x4" and model.scale == 4 and model.lr_size == 32 and model.params > 0
    assert model(lr, lm, np.ones(1, bool)).shape == (1, 128, 128, 3)


def test_an_onnx_export_opens_through_the_registered_onnx_backend(golden):
    pytest.importorskip("onnxruntime")
    lr, lm, expected = golden
    model = load_model(BUNDLE / "sr.onnx")
    assert type(model).__module__ == "edge_affectsr.convert.onnx_backend" and (model.scale, model.lr_size) == (4, 32)
    assert model(lr, lm, np.ones(1, bool)).shape == expected[None].shape


def test_an_unknown_suffix_is_a_user_error(tmp_path: Path):
    weights = tmp_path / "model.h5"
    weights.write_bytes(b"\0")
    with pytest.raises(UserError, match=r"model\.h5: unsupported model type \(expected .*\.onnx, \.pt, \.tflite"):
        load_model(weights)


def test_a_missing_stage_names_the_extra_to_install(tmp_path: Path, monkeypatch):
    """What a device-only install sees for a checkpoint: the [distill] extra, not an ImportError."""
    shutil.copy(resolve_model("student-x4"), tmp_path / "student.pt")

    class Unloadable:
        name, module = "pt", "edge_affectsr.distill.torch_backend"

        def load(self):
            raise ModuleNotFoundError("No module named 'torch'")

    monkeypatch.setattr(backend_module, "entry_points", lambda group: [Unloadable()])
    with pytest.raises(UserError, match=r"a \.pt model needs the \[distill\] extra .*No module named 'torch'"):
        load_model(tmp_path / "student.pt")


def test_landmark_subset_of_a_bare_model_comes_from_its_input_size():
    assert subset_for(162, Path("m.tflite")) == "contours"
    assert subset_for(478, Path("m.tflite")) == "full"
    with pytest.raises(UserError, match="matches no landmark subset"):
        subset_for(68, Path("m.tflite"))
