"""A camera degradation model: how a real camera renders a small face, seeded per face.

Why: the evaluation protocol's LR (a sharp 128 px crop shrunk with Pillow's bicubic) is not what a
CCTV, doorbell or far-away camera delivers, and models trained only on it add almost nothing on
camera faces. A camera does, in this order (Real-ESRGAN's "second-order" model is the reference):

1. lens / defocus blur on the scene: isotropic or anisotropic Gaussian, sometimes a short motion blur;
2. sampling to the size the face has on the sensor: the protocol's 128 px crop rendered at ``crop_px``
   (12-40 px, in the protocol's framing: the face itself spans ~60 % of the crop), by area,
   bilinear or bicubic resampling;
3. sensor noise: Poisson shot noise (signal-dependent) and Gaussian read noise, grey (luma) or per
   colour channel;
4. compression: JPEG at a random quality, or H.264 with a real encoder (libx264 through PyAV);
5. optionally a second, milder round of blur / noise / compression (re-encoding, streaming);
6. then the small face is resampled to the model's LR grid exactly as the device's aligner does at
   run time (:func:`edge_affectsr.runtime.align.warp_crop` to the 128 px crop, bilinear, then the
   protocol's bicubic downsample). A crop smaller than the model's LR size is the normal case: the
   device upsamples it to the crop and downsamples to the LR grid, so training sees the same.

Every random choice comes from ``numpy.random.default_rng([seed, index])``: a face's degraded LR
(and so its cached landmarks) is the same in every epoch and every run. Sizes are in pixels of the
small crop (blur sigma, motion length), as a lens's point spread is measured against the sensor.

Why in the runtime layer: training and ``eval`` (distill), int8 calibration (convert) and the device
path's ``camera-eval`` all render faces with this one model. It needs OpenCV and, for H.264 only,
PyAV (in the ``[distill]`` and ``[convert]`` extras; a device install without it gets a clear error).
"""

from __future__ import annotations

import io
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge_affectsr import protocol
from edge_affectsr.errors import UserError
from edge_affectsr.runtime.align import warp_crop

Range = tuple[float, float]
RESAMPLERS = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


class CameraDegradation(BaseModel):
    """The parameters of :func:`degrade_face`; every range is sampled uniformly per face."""

    model_config = ConfigDict(extra="forbid")
    clean_p: float = Field(0.0, ge=0, le=1, description="share of faces left under the clean protocol (bicubic to the LR size)")
    crop_px: tuple[int, int] = Field((12, 40), description="side of the face crop in the frame, px (min, max)")
    blur_p: float = Field(0.9, ge=0, le=1, description="probability of lens blur")
    blur_sigma: Range = Field((0.3, 1.2), description="Gaussian sigma in small-crop px")
    anisotropic_p: float = Field(0.3, ge=0, le=1, description="share of blurs with two sigmas and a rotation")
    motion_p: float = Field(0.1, ge=0, le=1, description="probability of a short linear motion blur")
    motion_px: Range = Field((1.0, 3.0), description="motion blur length, small-crop px")
    resample: list[Literal["area", "bilinear", "bicubic"]] = Field(
        default_factory=lambda: ["area", "bilinear", "bicubic"], min_length=1, description="sampling to the crop size")
    noise_p: float = Field(0.8, ge=0, le=1, description="probability of sensor noise")
    read_sigma: Range = Field((1.0, 8.0), description="Gaussian read noise, 8-bit levels")
    shot_peak: Range = Field((80.0, 1000.0), description="Poisson shot noise: photons at full scale (lower = noisier)")
    grey_noise_p: float = Field(0.4, ge=0, le=1, description="share of noise that is the same in all channels (luma)")
    jpeg_p: float = Field(0.5, ge=0, le=1, description="probability of JPEG compression")
    jpeg_quality: tuple[int, int] = Field((30, 90), description="JPEG quality range")
    h264_p: float = Field(0.4, ge=0, le=1, description="probability of H.264 compression (else JPEG or none)")
    h264_crf: tuple[int, int] = Field((24, 36), description="x264 constant rate factor range (higher = worse)")
    second_round_p: float = Field(0.0, ge=0, le=1, description="probability of a second, milder blur/noise/compression round")

    @model_validator(mode="after")
    def _ranges(self) -> CameraDegradation:
        for name in ("crop_px", "blur_sigma", "motion_px", "read_sigma", "shot_peak", "jpeg_quality", "h264_crf"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}: min {lo} is above max {hi}")
        if self.crop_px[0] < 8:
            raise ValueError("crop_px: faces below 8 px cannot be encoded")
        if self.jpeg_p + self.h264_p > 1:
            raise ValueError("jpeg_p + h264_p must be at most 1 (one codec per round)")
        return self

    def at_size(self, crop_px: int) -> CameraDegradation:
        """The same model with the crop side fixed (a benchmark cell)."""
        return self.model_copy(update={"crop_px": (crop_px, crop_px)})


# Training mixtures, and the benchmark's fixed cells (``eval --degradation lens:32``). The cells are
# deliberately narrower than the training mixtures: a model is scored on camera conditions, not on
# the exact recipe it was trained with.
PRESETS: dict[str, CameraDegradation] = {
    "camera": CameraDegradation(clean_p=0.1),
    "camera-hard": CameraDegradation(crop_px=(12, 32), blur_sigma=(0.4, 1.6), read_sigma=(2.0, 12.0), shot_peak=(40.0, 500.0),
                                     jpeg_quality=(20, 70), h264_crf=(28, 42), second_round_p=0.3),
    "lens": CameraDegradation(blur_p=1.0, blur_sigma=(0.6, 1.0), anisotropic_p=0.0, motion_p=0.0, resample=["area"],
                              noise_p=0.0, jpeg_p=0.0, h264_p=0.0),
    "jpeg": CameraDegradation(blur_p=1.0, blur_sigma=(0.4, 0.8), anisotropic_p=0.0, motion_p=0.0, resample=["area"],
                              noise_p=1.0, read_sigma=(2.0, 5.0), shot_peak=(200.0, 800.0), grey_noise_p=0.5,
                              jpeg_p=1.0, jpeg_quality=(40, 70), h264_p=0.0),
    "h264": CameraDegradation(blur_p=1.0, blur_sigma=(0.4, 0.8), anisotropic_p=0.0, motion_p=0.0, resample=["area"],
                              noise_p=1.0, read_sigma=(2.0, 5.0), shot_peak=(200.0, 800.0), grey_noise_p=0.5,
                              jpeg_p=0.0, h264_p=1.0, h264_crf=(28, 34)),
}
GRID_CELLS = ("lens", "jpeg", "h264")
GRID_SIZES = (16, 24, 32)


def parse_degradation(spec: str) -> tuple[str, CameraDegradation | None]:
    """``"clean"`` -> the protocol (None); ``"PRESET"`` or ``"PRESET:SIZE"`` -> (label, model at that crop size)."""
    name, _, size = spec.partition(":")
    if name == "clean":
        if size:
            raise ValueError("'clean' is the evaluation protocol (bicubic to the LR size); it takes no :SIZE")
        return "clean", None
    if name not in PRESETS:
        raise ValueError(f"unknown degradation {name!r}; choose clean or one of {', '.join(PRESETS)} (optionally :SIZE, e.g. lens:32)")
    if not size:
        return name, PRESETS[name]
    if not size.isdigit() or not 8 <= int(size) <= 128:
        raise ValueError(f"{spec!r}: SIZE must be a crop side in px between 8 and 128, e.g. {name}:24")
    return f"{name}:{size}", PRESETS[name].at_size(int(size))


def degrade_face(hr: np.ndarray, cfg: CameraDegradation, lr_size: int, seed: int, index: int) -> np.ndarray:
    """HR face crop uint8 RGB ``[128, 128, 3]`` -> the LR face a camera would give the model, ``[lr_size, lr_size, 3]``."""
    rng = np.random.default_rng([seed, index])
    if rng.random() < cfg.clean_p:
        return protocol.resize(hr, lr_size)
    side = int(rng.integers(cfg.crop_px[0], cfg.crop_px[1] + 1))
    small = _one_round(hr.astype(np.float32), cfg, rng, side, first=True)
    if rng.random() < cfg.second_round_p:
        small = _one_round(small.astype(np.float32), cfg, rng, side, first=False)
    return to_lr_grid(small, lr_size, hr.shape[0])


def to_lr_grid(small: np.ndarray, lr_size: int, crop_size: int = protocol.HR_SIZE) -> np.ndarray:
    """A small face crop ``[s, s, 3]`` -> the model's LR input, as the device's aligner makes it: warped
    (bilinear) to the ``crop_size`` crop, then the protocol's bicubic downsample to ``lr_size``."""
    s = small.shape[0]
    k = crop_size / s  # crop px per small px; pixel centres map (x + 0.5) * k - 0.5
    matrix = np.array([[k, 0.0, 0.5 * k - 0.5], [0.0, k, 0.5 * k - 0.5]])
    return protocol.resize(warp_crop(small, matrix, crop_size), lr_size)


def _one_round(img: np.ndarray, cfg: CameraDegradation, rng: np.random.Generator, side: int, first: bool) -> np.ndarray:
    """Blur (at the input's scale), resample to ``side`` (first round only), noise, compress. float in, uint8 out."""
    if rng.random() < cfg.blur_p:
        img = _lens_blur(img, cfg, rng, img.shape[0] / side, 1.0 if first else 0.5)
    if img.shape[0] != side:
        img = _resample(img, cfg, rng, side)
    return _noise_and_codec(img, cfg, rng, first)


def _resample(img: np.ndarray, cfg: CameraDegradation, rng: np.random.Generator, side: int) -> np.ndarray:
    """Sampling to the face's size on the sensor, by one of ``cfg.resample``'s filters."""
    method = RESAMPLERS[cfg.resample[int(rng.integers(len(cfg.resample)))]]
    return cv2.resize(img, (side, side), interpolation=method)


def _lens_blur(img: np.ndarray, cfg: CameraDegradation, rng: np.random.Generator, scale: float, mild: float) -> np.ndarray:
    """Gaussian (isotropic or anisotropic, rotated) and sometimes motion blur; sigmas in small-crop px."""
    sx = float(rng.uniform(*cfg.blur_sigma)) * mild
    sy = float(rng.uniform(*cfg.blur_sigma)) * mild if rng.random() < cfg.anisotropic_p else sx
    kernel = gaussian_kernel(sx * scale, sy * scale, float(rng.uniform(0, np.pi)))
    if rng.random() < cfg.motion_p:
        kernel = cv2.filter2D(kernel, -1, motion_kernel(float(rng.uniform(*cfg.motion_px)) * scale, float(rng.uniform(0, np.pi))))
        kernel /= kernel.sum()
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT)


def gaussian_kernel(sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """A normalised 2-D Gaussian with principal sigmas ``sigma_x``, ``sigma_y`` (px) rotated by ``theta``."""
    radius = max(1, int(np.ceil(3 * max(sigma_x, sigma_y, 0.1))))
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1].astype(np.float32)
    c, s = np.cos(theta), np.sin(theta)
    u, v = c * x + s * y, -s * x + c * y
    k = np.exp(-0.5 * ((u / max(sigma_x, 1e-3)) ** 2 + (v / max(sigma_y, 1e-3)) ** 2))
    return (k / k.sum()).astype(np.float32)


def motion_kernel(length: float, theta: float) -> np.ndarray:
    """A normalised line of ``length`` px at angle ``theta``."""
    radius = max(1, int(np.ceil(length / 2)))
    k = np.zeros((2 * radius + 1, 2 * radius + 1), np.float32)
    dx, dy = np.cos(theta) * length / 2, np.sin(theta) * length / 2
    cv2.line(k, (round(radius - dx), round(radius - dy)), (round(radius + dx), round(radius + dy)), 1.0, 1, cv2.LINE_AA)
    return k / k.sum()


def _sensor_noise(img: np.ndarray, cfg: CameraDegradation, rng: np.random.Generator, mild: float) -> np.ndarray:
    """Poisson shot noise (variance proportional to the signal) plus Gaussian read noise, grey or per channel."""
    grey = rng.random() < cfg.grey_noise_p
    shape = img.shape[:2] + ((1,) if grey else (3,))
    peak = float(rng.uniform(*cfg.shot_peak)) / mild
    signal = np.clip(img, 0, 255) / 255.0
    level = signal.mean(axis=2, keepdims=True) if grey else signal
    shot = (rng.poisson(level * peak) / peak - level) * 255.0
    read = rng.normal(0.0, float(rng.uniform(*cfg.read_sigma)) * mild, shape)
    return img + np.broadcast_to(shot + read, img.shape)


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip at ``quality`` (4:2:0 chroma, as cameras store stills)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def h264(rgb: np.ndarray, crf: int) -> np.ndarray:
    """H.264 round trip with libx264 (PyAV) at constant rate factor ``crf``, yuv420p as camera streams are;
    the crop is padded to even sides (4:2:0 needs them) by edge replication and cut back after decoding."""
    try:
        import av  # imported here: importing this module stays light, and a device install may not have it
    except ImportError:
        raise UserError("H.264 degradation needs PyAV: pip install av (it is in the [distill] and [convert] extras)") from None

    h, w = rgb.shape[:2]
    padded = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    buf = io.BytesIO()
    with av.open(buf, "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = padded.shape[1], padded.shape[0], "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "tune": "zerolatency"}
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(padded), format="rgb24")):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    buf.seek(0)
    with av.open(buf, "r", format="h264") as inp:
        frame = next(inp.decode(video=0)).to_ndarray(format="rgb24")
    return frame[:h, :w]


# --- A face staged small in a whole camera frame (camera-eval --small) ---------------------------
# The same model as degrade_face, split where a real camera splits it: the optics and the sampling
# act on the face (steps 1-2, render_crop), the sensor and the encoder on the whole frame the face
# is in (steps 3-5, degrade_frame), so the background, the face's surround and the codec's blocks
# around it are degraded too. ``clean_p`` does not apply: a frame has no protocol path.


def render_crop(hr: np.ndarray, cfg: CameraDegradation, rng: np.random.Generator) -> np.ndarray:
    """Steps 1-2: lens blur at the scene's scale, then resampling to a side drawn from ``cfg.crop_px``.
    HR crop uint8 RGB ``[128, 128, 3]`` -> float32 ``[side, side, 3]``, not rounded yet (the frame's
    noise comes first)."""
    side = int(rng.integers(cfg.crop_px[0], cfg.crop_px[1] + 1))
    img = hr.astype(np.float32)
    if rng.random() < cfg.blur_p:
        img = _lens_blur(img, cfg, rng, img.shape[0] / side, 1.0)
    return _resample(img, cfg, rng, side)


def degrade_frame(frame: np.ndarray, cfg: CameraDegradation, rng: np.random.Generator) -> np.ndarray:
    """Steps 3-5 on a whole RGB frame (float or uint8, any size): sensor noise, JPEG or H.264, and
    with ``cfg.second_round_p`` a milder blur/noise/compression round (sigmas at the frame's scale). -> uint8."""
    out = _noise_and_codec(frame.astype(np.float32), cfg, rng, first=True)
    if rng.random() < cfg.second_round_p:
        img = out.astype(np.float32)
        if rng.random() < cfg.blur_p:
            img = _lens_blur(img, cfg, rng, 1.0, 0.5)
        out = _noise_and_codec(img, cfg, rng, first=False)
    return out


def _noise_and_codec(img: np.ndarray, cfg: CameraDegradation, rng: np.random.Generator, first: bool) -> np.ndarray:
    """Steps 3-4, the sensor and the encoder (a second round is milder); float in, uint8 out."""
    if rng.random() < cfg.noise_p:
        img = _sensor_noise(img, cfg, rng, 1.0 if first else 0.5)
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    codec = rng.random()
    if codec < cfg.jpeg_p:
        lo, hi = cfg.jpeg_quality
        out = jpeg(out, int(rng.integers(lo, hi + 1)) if first else int(rng.integers((lo + hi) // 2, hi + 1)))
    elif codec < cfg.jpeg_p + cfg.h264_p:
        lo, hi = cfg.h264_crf
        out = h264(out, int(rng.integers(lo, hi + 1)) if first else int(rng.integers(lo, (lo + hi) // 2 + 1)))
    return out
