"""Image-quality and expression-fidelity metrics, numpy only (the device uses them too).

Images are ``uint8`` (or float in ``[0, 255]``) arrays ``H x W x 3`` in RGB order. Expression
measures take arrays of class probabilities ``[n_faces, n_classes]`` from a FER model run on the HR
image and on the super-resolved (SR) one.
"""

from __future__ import annotations

import numpy as np

ECM_ALPHA = 0.5
_EPS = 1e-8


def _as_float(img: np.ndarray) -> np.ndarray:
    return np.asarray(img, dtype=np.float64)


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma in [16, 235], as the SR literature (MATLAB ``rgb2ycbcr``) computes it."""
    x = _as_float(img)
    return 16.0 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels."""
    if np.shape(a) != np.shape(b):
        raise ValueError(f"psnr: shapes differ, {np.shape(a)} vs {np.shape(b)}")
    mse = np.mean((_as_float(a) - _as_float(b)) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def psnr_y(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR on the luma channel only (the usual SR-paper convention)."""
    return psnr(rgb_to_y(a), rgb_to_y(b))


def _box_filter(x: np.ndarray, size: int) -> np.ndarray:
    """Mean over ``size x size`` windows, 'valid' region only (summed-area table)."""
    c = np.cumsum(np.cumsum(np.pad(x, ((1, 0), (1, 0))), axis=0), axis=1)
    s = c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]
    return s / float(size * size)


def _ssim_channel(x: np.ndarray, y: np.ndarray, data_range: float, win: int) -> float:
    # Same estimator as scikit-image's default: 7x7 uniform window, sample covariance,
    # mean over the window positions that fit inside the image.
    n = win * win
    cov_norm = n / (n - 1.0)
    ux, uy = _box_filter(x, win), _box_filter(y, win)
    vx = cov_norm * (_box_filter(x * x, win) - ux * ux)
    vy = cov_norm * (_box_filter(y * y, win) - uy * uy)
    vxy = cov_norm * (_box_filter(x * y, win) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    num = (2 * ux * uy + c1) * (2 * vxy + c2)
    den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
    return float(np.mean(num / den))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0, win: int = 7) -> float:
    """Structural similarity, mean over channels (matches ``skimage.metrics.structural_similarity``
    with ``channel_axis=-1`` and default arguments)."""
    if np.shape(a) != np.shape(b):
        raise ValueError(f"ssim: shapes differ, {np.shape(a)} vs {np.shape(b)}")
    x, y = _as_float(a), _as_float(b)
    if x.ndim == 2:
        return _ssim_channel(x, y, data_range, win)
    return float(np.mean([_ssim_channel(x[..., c], y[..., c], data_range, win) for c in range(x.shape[-1])]))


def ssim_y(a: np.ndarray, b: np.ndarray) -> float:
    return ssim(rgb_to_y(a), rgb_to_y(b))


# --- expression fidelity ------------------------------------------------------------------------


def _probs(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"expected class probabilities [n_faces, n_classes], got shape {p.shape}")
    return np.clip(p, _EPS, 1.0)


def expression_agreement(p_hr: np.ndarray, p_sr: np.ndarray) -> float:
    """Fraction of faces whose top-1 expression on SR equals the top-1 on HR."""
    return float(np.mean(np.argmax(p_hr, axis=1) == np.argmax(p_sr, axis=1)))


def kl_divergence(p_hr: np.ndarray, p_sr: np.ndarray) -> float:
    """Mean KL(p_HR || p_SR) in nats: how much expression information the upscale lost."""
    a, b = _probs(p_hr), _probs(p_sr)
    return float(np.mean(np.sum(a * (np.log(a) - np.log(b)), axis=1)))


def cross_entropy(p_hr: np.ndarray, p_sr: np.ndarray) -> float:
    """Mean H(p_HR, p_SR) = -sum p_HR log p_SR in nats."""
    a, b = _probs(p_hr), _probs(p_sr)
    return float(np.mean(-np.sum(a * np.log(b), axis=1)))


def confidence_loss_ratio(p_hr: np.ndarray, p_sr: np.ndarray) -> float:
    """Geometric mean of p_HR[c] / p_SR[c], with c the HR's top-1 class: 1 when SR keeps the HR's
    confidence in its own expression, larger when SR weakens it."""
    a, b = _probs(p_hr), _probs(p_sr)
    idx = np.argmax(a, axis=1)
    rows = np.arange(len(idx))
    return float(np.exp(np.mean(np.log(a[rows, idx]) - np.log(b[rows, idx]))))


def emotion_consistency(p_hr: np.ndarray, p_sr: np.ndarray, alpha: float = ECM_ALPHA) -> float:
    """Emotion Consistency Metric, ``ECM = alpha * L_H + log(L_conf)`` (AffectSRNet, alpha = 0.5).

    The paper leaves L_H and L_conf loosely defined; we read them as two *costs*, so that a lower
    ECM is better and every term can be checked by hand:

    * ``L_H``    = cross-entropy H(p_HR, p_SR): the HR's expression distribution as the target;
    * ``L_conf`` = geometric mean over faces of p_HR[c] / p_SR[c], c = the HR's top-1 class: the
      factor by which SR lost the HR's confidence in its own expression (1 = kept, log = 0).

    Reports always print agreement and KL beside it so no reader has to trust this number alone.
    """
    return float(alpha * cross_entropy(p_hr, p_sr) + np.log(confidence_loss_ratio(p_hr, p_sr)))


def fer_accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of a FER model against integer class labels (in the model's class order)."""
    labels = np.asarray(labels)
    if len(labels) != len(probs):
        raise ValueError(f"fer_accuracy: {len(probs)} predictions but {len(labels)} labels")
    return float(np.mean(np.argmax(probs, axis=1) == labels))


def paired_difference(a: np.ndarray, b: np.ndarray, n_boot: int = 10000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``a - b`` over the same faces with its 95 % paired-bootstrap interval ``(mean, lo, hi)``.

    Two models scored on the same 600 faces differ less than their separate error bars suggest:
    resampling faces (not models) tells whether "ahead on agreement" is more than which faces were drawn.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise ValueError(f"need two equal-length 1-D score arrays, got {a.shape} and {b.shape}")
    d = a - b
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // len(d))  # resampled means in blocks: memory stays ~16 MB at any n
    means = np.concatenate([d[rng.integers(0, len(d), size=(min(chunk, n_boot - i), len(d)))].mean(axis=1)
                            for i in range(0, n_boot, chunk)])
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(d.mean()), float(lo), float(hi)
