"""edge_affectsr/metrics.py: image quality against scikit-image, expression measures by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from edge_affectsr import metrics, protocol
from synthetic_faces import face_variants


@pytest.fixture(scope="module")
def face_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """(HR, bicubic SR) of face photos (the built-in face's variants) under the protocol, at x4 and x8."""
    pairs = []
    for i, face in enumerate(face_variants(6)):
        hr = protocol.make_hr(face)
        pairs.append((hr, protocol.bicubic_up(protocol.make_lr(hr, 4 if i % 2 == 0 else 8))))
    return pairs


# --- PSNR / SSIM -----------------------------------------------------------------------------------


def test_psnr_and_ssim_match_skimage_on_real_faces(face_pairs):
    for hr, sr in face_pairs:
        assert hr.dtype == sr.dtype == np.uint8
        ref_psnr = peak_signal_noise_ratio(hr, sr, data_range=255)
        ref_ssim = structural_similarity(hr, sr, channel_axis=-1, data_range=255)
        assert metrics.psnr(hr, sr) == pytest.approx(ref_psnr, abs=1e-6)
        assert metrics.ssim(hr, sr) == pytest.approx(ref_ssim, abs=1e-6)
        # an x4/x8 bicubic face is neither perfect nor garbage
        assert 15 < metrics.psnr(hr, sr) < 40 and 0.3 < metrics.ssim(hr, sr) < 0.99


def test_luma_metrics_match_skimage_ycbcr_on_real_faces(face_pairs):
    for hr, sr in face_pairs:
        y_hr, y_sr = rgb2ycbcr(hr)[..., 0], rgb2ycbcr(sr)[..., 0]
        np.testing.assert_allclose(metrics.rgb_to_y(hr), y_hr, atol=1e-9)
        assert metrics.psnr_y(hr, sr) == pytest.approx(peak_signal_noise_ratio(y_hr, y_sr, data_range=255), abs=1e-6)
        assert metrics.ssim_y(hr, sr) == pytest.approx(
            structural_similarity(y_hr, y_sr, data_range=255), abs=1e-6)


def test_identical_real_faces(face_pairs):
    hr, _ = face_pairs[0]
    assert metrics.psnr(hr, hr.copy()) == float("inf")
    assert metrics.ssim(hr, hr.copy()) == pytest.approx(1.0, abs=1e-12)


def test_psnr_ssim_match_skimage_on_random_images_of_odd_size():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    assert metrics.psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-6)
    assert metrics.ssim(a, b) == pytest.approx(
        structural_similarity(a, b, channel_axis=-1, data_range=255), abs=1e-6)
    g1, g2 = a[..., 0].astype(float), b[..., 0].astype(float)  # 2-D (grey) input
    assert metrics.ssim(g1, g2) == pytest.approx(structural_similarity(g1, g2, data_range=255), abs=1e-6)


def test_psnr_by_hand():
    a = np.zeros((4, 4, 3), dtype=np.uint8)
    b = a.copy()
    b[1, 2, 0] = 10  # one error of 10 among 48 values: MSE = 100 / 48
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / (100 / 48)), abs=1e-12)
    assert metrics.psnr(a, b, data_range=1.0) == pytest.approx(10 * math.log10(1 / (100 / 48)), abs=1e-12)
    assert metrics.psnr(a, a) == float("inf")


def test_metrics_on_uint8_do_not_wrap_around():
    a = np.full((8, 8, 3), 250, np.uint8)
    b = np.full((8, 8, 3), 5, np.uint8)  # uint8 subtraction would wrap: 5 - 250 = 11
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 245**2), abs=1e-12)


def test_shape_mismatch_raises():
    a, b = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.psnr(a, b)
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.ssim(a, b)
    with pytest.raises(ValueError):
        metrics.psnr(a, a[..., :1])


# --- expression fidelity -----------------------------------------------------------------------------

P_HR = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]])
P_SR = np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]])  # face 1 keeps its top class, face 2 does not


def test_expression_measures_by_hand_for_two_faces():
    ln = math.log
    assert metrics.expression_agreement(P_HR, P_SR) == 0.5

    kl1 = 0.7 * ln(0.7 / 0.5) + 0.2 * ln(0.2 / 0.3) + 0.1 * ln(0.1 / 0.2)
    kl2 = 0.1 * ln(0.1 / 0.5) + 0.6 * ln(0.6 / 0.3) + 0.3 * ln(0.3 / 0.2)
    assert metrics.kl_divergence(P_HR, P_SR) == pytest.approx((kl1 + kl2) / 2, abs=1e-12)

    ce1 = -(0.7 * ln(0.5) + 0.2 * ln(0.3) + 0.1 * ln(0.2))
    ce2 = -(0.1 * ln(0.5) + 0.6 * ln(0.3) + 0.3 * ln(0.2))
    ce = (ce1 + ce2) / 2
    assert metrics.cross_entropy(P_HR, P_SR) == pytest.approx(ce, abs=1e-12)

    # HR's top-1: class 0 (0.7) for face 1, class 1 (0.6) for face 2; SR gives them 0.5 and 0.3.
    ratio = math.sqrt((0.7 / 0.5) * (0.6 / 0.3))
    assert metrics.confidence_loss_ratio(P_HR, P_SR) == pytest.approx(ratio, abs=1e-12)
    assert metrics.emotion_consistency(P_HR, P_SR) == pytest.approx(0.5 * ce + ln(ratio), abs=1e-12)
    assert metrics.emotion_consistency(P_HR, P_SR, alpha=1.0) == pytest.approx(ce + ln(ratio), abs=1e-12)


def test_kl_is_cross_entropy_minus_entropy_and_non_negative():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(7), size=50)
    q = rng.dirichlet(np.ones(7), size=50)
    entropy = float(np.mean(-np.sum(p * np.log(p), axis=1)))
    assert metrics.kl_divergence(p, q) == pytest.approx(metrics.cross_entropy(p, q) - entropy, abs=1e-9)
    assert metrics.kl_divergence(p, q) > 0
    for i in range(len(p)):  # per face too (Gibbs' inequality)
        assert metrics.kl_divergence(p[i : i + 1], q[i : i + 1]) >= 0


def test_identical_distributions():
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(7), size=10)
    entropy = float(np.mean(-np.sum(p * np.log(p), axis=1)))
    assert metrics.kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert metrics.expression_agreement(p, p) == 1.0
    assert metrics.confidence_loss_ratio(p, p) == pytest.approx(1.0, abs=1e-12)
    assert metrics.cross_entropy(p, p) == pytest.approx(entropy, abs=1e-12)
    assert metrics.emotion_consistency(p, p) == pytest.approx(0.5 * entropy, abs=1e-12)


def test_zero_probabilities_stay_finite():
    p_hr = np.array([[1.0, 0.0, 0.0]])
    p_sr = np.array([[0.0, 1.0, 0.0]])  # SR gives HR's class probability 0
    for f in (metrics.kl_divergence, metrics.cross_entropy, metrics.confidence_loss_ratio, metrics.emotion_consistency):
        assert np.isfinite(f(p_hr, p_sr))
    assert metrics.kl_divergence(p_hr, p_sr) > 10  # clipped at 1e-8: -log(1e-8) ~ 18.4


def test_expression_measures_reject_a_single_vector():
    with pytest.raises(ValueError, match="n_faces, n_classes"):
        metrics.kl_divergence(np.array([0.5, 0.5]), np.array([0.5, 0.5]))


def test_fer_accuracy():
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.1, 0.6, 0.3], [0.4, 0.35, 0.25]])
    assert metrics.fer_accuracy(probs, np.array([0, 2, 0, 0])) == 0.75
    assert metrics.fer_accuracy(probs, [0, 2, 1, 0]) == 1.0
    with pytest.raises(ValueError, match="4 predictions but 3 labels"):
        metrics.fer_accuracy(probs, np.array([0, 2, 1]))


def test_paired_difference_of_a_model_with_itself_has_a_zero_width_interval():
    """Paired resampling: the same faces on both sides of every resample (an unpaired bootstrap of
    the two means would give an interval of about +-4 points here)."""
    scores = np.random.default_rng(1).integers(0, 2, 600)
    assert metrics.paired_difference(scores, scores) == (0.0, 0.0, 0.0)


def test_paired_difference_interval_by_hand():
    """600 faces, model a right on 30 faces where b is wrong and nowhere else: +5 points; the
    paired interval stays above 0 (a 5-point gain supported by the faces) and brackets the mean."""
    b = np.zeros(600)
    a = b.copy()
    a[:30] = 1
    mean, lo, hi = metrics.paired_difference(a, b)
    assert mean == pytest.approx(0.05)
    assert 0.0 < lo < mean < hi < 0.1
    assert metrics.paired_difference(a, b) == (mean, lo, hi)  # seeded: reproducible


def test_paired_difference_straddles_zero_for_swapped_faces():
    """Both models right on 30 faces, but different ones: no difference the faces support."""
    a, b = np.zeros(600), np.zeros(600)
    a[:30], b[30:60] = 1, 1
    mean, lo, hi = metrics.paired_difference(a, b)
    assert mean == 0.0 and lo < 0.0 < hi


def test_paired_difference_needs_equal_1d_arrays():
    with pytest.raises(ValueError, match="equal-length"):
        metrics.paired_difference(np.zeros(3), np.zeros(4))
