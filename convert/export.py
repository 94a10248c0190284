"""Student checkpoint -> ONNX with the layout onnx2tf turns into clean TFLite.

Inputs: ``img`` ``[1, 3, h, w]`` in [0, 1] (NCHW here; onnx2tf makes it NHWC) and ``lm``
``[1, N, 2]`` normalised landmarks (kept as is with ``-kat lm``). Output: ``sr`` ``[1, H, W, 3]``,
NHWC already: the explicit transpose after the DCR depth-to-space cancels the one onnx2tf would
add, so the TFLite graph ends in a single DEPTH_TO_SPACE.

The output is **not clipped** to [0, 1]: every runtime clips when it turns the output into pixels
(``runtime.sr.to_uint8``; a TensorRT user of ``sr.onnx`` must too). In the graph, onnx2tf turns the
clip into an int8 MINIMUM + RELU pair that XNNPACK does not delegate, which split the int8 model into
three delegate partitions (``edge-affectsr bench``, per-face table, back to back: 1.43 -> 0.95 ms a face
at 2 threads). The int8 output's step grows from 1/255 to ~1.4/255; int8 vs fp32 in the bundle report
(``make bundle-x4``): 45.65 -> 45.52 dB on camera faces, 46.51 -> 46.40 dB clean.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from edge_affectsr.distill.archs.build import build_sr_model
from edge_affectsr.distill.checkpoints import load_checkpoint

OPSET = 17


class ExportWrapper(nn.Module):
    """``img [1,3,h,w]``, ``lm [1,N,2]`` -> ``sr [1,H,W,3]``, unclipped (module docstring)."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, img: torch.Tensor, lm: torch.Tensor) -> torch.Tensor:
        return self.student(img, lm, clamp=False).sr


def load_student(path: Path) -> tuple[nn.Module, dict]:
    ckpt = load_checkpoint(path, kinds=("student",))
    model = build_sr_model("student", ckpt["config"]["model"]).eval()
    model.load_state_dict(ckpt["model"])
    return model, ckpt


def export_onnx(student: nn.Module, out: Path, lr_size: int, n_landmarks: int) -> Path:
    wrapper = ExportWrapper(student).eval()
    dummy = (torch.rand(1, 3, lr_size, lr_size), torch.rand(1, n_landmarks, 2))
    torch.onnx.export(
        wrapper, dummy, str(out), input_names=["img", "lm"], output_names=["sr"],
        opset_version=OPSET, dynamo=False, do_constant_folding=True,
    )
    return out
