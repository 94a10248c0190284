"""distill/data/degradations.py: seeded, switchable LR degradations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_affectsr.distill.data.degradations import DegradationConfig, degrade
from edge_affectsr import protocol

ALL = DegradationConfig(blur=True, noise=True, jpeg=True)


def synthetic_lr() -> np.ndarray:
    """A 32 x 32 RGB image with smooth shading and sharp edges (runs without the shared data)."""
    y, x = np.mgrid[0:32, 0:32]
    img = np.stack([x * 8, y * 8, ((x // 4 + y // 4) % 2) * 200 + 20], axis=-1)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def real_lr(shared_data: Path) -> np.ndarray:
    files = sorted((shared_data / "celeba" / "val").glob("*.jpg"))
    if not files:
        pytest.skip("no CelebA val faces")
    return protocol.make_lr(protocol.make_hr(Image.open(files[0])), 4)


def high_freq_energy(img: np.ndarray) -> float:
    g = img.astype(np.float64).mean(axis=-1)
    return float(np.mean(np.diff(g, axis=0) ** 2) + np.mean(np.diff(g, axis=1) ** 2))


def test_disabled_is_identity():
    lr = synthetic_lr()
    out = degrade(lr, DegradationConfig(), seed=0, index=3)
    np.testing.assert_array_equal(out, lr)
    assert not DegradationConfig().any and ALL.any


def test_enabled_is_deterministic_per_seed_and_index():
    lr = synthetic_lr()
    a = degrade(lr, ALL, seed=0, index=5)
    assert a.dtype == np.uint8 and a.shape == lr.shape
    np.testing.assert_array_equal(a, degrade(lr, ALL, seed=0, index=5))
    assert not np.array_equal(a, lr)
    assert not np.array_equal(a, degrade(lr, ALL, seed=0, index=6))
    assert not np.array_equal(a, degrade(lr, ALL, seed=1, index=5))
    np.testing.assert_array_equal(lr, synthetic_lr())  # the input is not modified


@pytest.mark.parametrize("switch", ["blur", "noise", "jpeg"])
def test_each_switch_alone_changes_the_image(switch):
    lr = synthetic_lr()
    out = degrade(lr, DegradationConfig(**{switch: True}), seed=0, index=0)
    assert out.dtype == np.uint8 and out.shape == lr.shape
    assert not np.array_equal(out, lr)


def test_blur_removes_detail_and_keeps_the_mean():
    lr = synthetic_lr()
    cfg = DegradationConfig(blur=True, blur_sigma=(1.0, 1.2))
    out = degrade(lr, cfg, seed=0, index=0)
    assert high_freq_energy(out) < 0.7 * high_freq_energy(lr)
    assert abs(out.astype(float).mean() - lr.astype(float).mean()) < 3


def test_noise_strength_follows_its_range():
    flat = np.full((64, 64, 3), 128, np.uint8)  # no clipping at mid-grey
    weak = degrade(flat, DegradationConfig(noise=True, noise_sigma=(1.0, 1.0)), seed=0, index=0)
    strong = degrade(flat, DegradationConfig(noise=True, noise_sigma=(8.0, 8.0)), seed=0, index=0)
    assert weak.astype(float).std() == pytest.approx(1.0, abs=0.2)
    assert strong.astype(float).std() == pytest.approx(8.0, abs=0.5)
    assert abs(strong.astype(float).mean() - 128) < 0.5


@pytest.mark.data
def test_on_a_real_lr_face(real_lr):
    assert real_lr.shape == (32, 32, 3)
    outs = [degrade(real_lr, ALL, seed=7, index=i) for i in range(4)]
    for out in outs:
        assert out.dtype == np.uint8 and out.shape == real_lr.shape
        # degraded, but still the same face: small mean error
        diff = np.abs(out.astype(float) - real_lr.astype(float)).mean()
        assert 0 < diff < 40
    assert len({o.tobytes() for o in outs}) == 4
    np.testing.assert_array_equal(outs[2], degrade(real_lr, ALL, seed=7, index=2))
