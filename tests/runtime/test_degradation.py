"""The camera degradation model (edge_affectsr/runtime/degradation.py): seeded, ordered as a camera works, and
resampled to the LR grid the way the device's aligner does."""

from __future__ import annotations

import numpy as np
import pytest

from edge_affectsr import protocol
from edge_affectsr.runtime.degradation import (GRID_CELLS, GRID_SIZES, PRESETS, CameraDegradation, degrade_face, h264, jpeg,
                                               parse_degradation, to_lr_grid)
from edge_affectsr.metrics import psnr
from edge_affectsr.runtime.align import Aligner


@pytest.fixture(scope="module")
def hr() -> np.ndarray:
    """A 128 px test card: rings and bars with detail at every scale, in colour."""
    y, x = np.mgrid[0:128, 0:128].astype(np.float32)
    r = np.hypot(x - 64, y - 60)
    rings = 127 + 100 * np.sin(r * r / 90.0)
    bars = 127 + 90 * np.sign(np.sin(x / 3.0))
    img = np.stack([rings, 0.5 * (rings + bars), bars], axis=-1)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_same_seed_and_index_give_the_same_face_and_others_differ(hr):
    cfg = PRESETS["camera-hard"]
    a, b = degrade_face(hr, cfg, 32, seed=3, index=7), degrade_face(hr, cfg, 32, seed=3, index=7)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, degrade_face(hr, cfg, 32, seed=3, index=8))
    assert not np.array_equal(a, degrade_face(hr, cfg, 32, seed=4, index=7))


def test_lr_grid_is_the_device_aligners_resampling(hr):
    # a crop already at the protocol's size passes the warp unchanged: the LR is the protocol's LR
    np.testing.assert_array_equal(to_lr_grid(hr, 32), protocol.make_lr(hr, 4))
    # the aligner's default downsample is the same bicubic step
    aligner = Aligner(32, np.arange(478))
    np.testing.assert_array_equal(aligner.downsample(hr), protocol.resize(hr, 32))
    # a small crop is upsampled to the crop, then down to the LR grid: any size in, the LR size out
    for side in (12, 16, 24, 40):
        assert to_lr_grid(hr[::128 // side][:side, :side].copy(), 16).shape == (16, 16, 3)


def test_smaller_crops_and_harsher_cells_lose_more(hr):
    def score(spec: str) -> float:
        _, cfg = parse_degradation(spec)
        return np.mean([psnr(protocol.bicubic_up(degrade_face(hr, cfg, 32, 0, i)), hr) for i in range(4)])

    clean = psnr(protocol.bicubic_up(protocol.make_lr(hr, 4)), hr)
    assert clean > score("lens:32") > score("lens:16")
    assert score("lens:24") > score("jpeg:24")


def test_codecs_degrade_with_their_quality_setting(hr):
    small = protocol.resize(protocol.resize(hr, 16), 32)  # smooth enough that a good codec setting keeps it
    assert psnr(jpeg(small, 95), small) > psnr(jpeg(small, 20), small) + 3
    assert psnr(h264(small, 18), small) > psnr(h264(small, 40), small) + 3
    odd = small[:31, :29]
    assert h264(odd, 30).shape == odd.shape  # padded to even sides for 4:2:0, cut back


def test_noise_is_added_only_when_asked(hr):
    quiet = CameraDegradation(crop_px=(32, 32), blur_p=0, noise_p=0, jpeg_p=0, h264_p=0, resample=["area"])
    noisy = quiet.model_copy(update={"noise_p": 1.0, "read_sigma": (6.0, 6.0)})
    a, b = degrade_face(hr, quiet, 32, 0, 0), degrade_face(hr, noisy, 32, 0, 0)
    np.testing.assert_array_equal(a, degrade_face(hr, quiet, 32, 5, 9))  # nothing random is left
    assert 2.0 < np.std(a.astype(float) - b.astype(float)) < 12.0


def test_grid_cells_parse_and_bad_specs_are_refused():
    assert parse_degradation("clean") == ("clean", None)
    for cell in GRID_CELLS:
        for size in GRID_SIZES:
            label, cfg = parse_degradation(f"{cell}:{size}")
            assert label == f"{cell}:{size}" and cfg.crop_px == (size, size)
    for bad in ("fog", "lens:big", "lens:4", "clean:32"):
        with pytest.raises(ValueError, match="degradation|SIZE|takes no"):
            parse_degradation(bad)
    with pytest.raises(ValueError, match="jpeg_p"):
        CameraDegradation(jpeg_p=0.7, h264_p=0.5)
    with pytest.raises(ValueError, match="above max"):
        CameraDegradation(crop_px=(30, 20))


def test_clean_share_keeps_the_protocol_lr(hr):
    always_clean = PRESETS["camera"].model_copy(update={"clean_p": 1.0})
    np.testing.assert_array_equal(degrade_face(hr, always_clean, 32, 0, 3), protocol.make_lr(hr, 4))
    renders = [degrade_face(hr, PRESETS["camera"], 32, 0, i) for i in range(60)]
    clean = sum(np.array_equal(r, protocol.make_lr(hr, 4)) for r in renders)
    assert 1 <= clean <= 15  # about 10 % of faces stay clean in the training mixture
