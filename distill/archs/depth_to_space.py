"""Depth-to-space in TensorFlow's DCR order, as one ONNX op: the student's last layer, the one op
the Edge TPU leaves to the CPU."""

from __future__ import annotations

import torch


class DepthToSpaceDCR(torch.autograd.Function):
    """TF's DEPTH_TO_SPACE (DCR): output ``(h*r+i, w*r+j, c)`` = input channel ``(i*r+j)*C + c``.
    Exports to ONNX as one ``DepthToSpace(mode='DCR')`` (PixelShuffle would export CRD, which
    onnx2tf can only express with 6-D transposes)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, r: int) -> torch.Tensor:  # noqa: D102
        ctx.r = r
        b, c, h, w = x.shape
        out = x.view(b, r, r, c // (r * r), h, w).permute(0, 3, 4, 1, 5, 2)
        return out.reshape(b, c // (r * r), h * r, w * r)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        b, c, hr, wr = grad.shape
        r = ctx.r
        g = grad.view(b, c, hr // r, r, wr // r, r).permute(0, 3, 5, 1, 2, 4)
        return g.reshape(b, c * r * r, hr // r, wr // r), None

    @staticmethod
    def symbolic(g, x, r: int):  # noqa: D102
        return g.op("DepthToSpace", x, blocksize_i=r, mode_s="DCR")


def depth_to_space_dcr(x: torch.Tensor, r: int) -> torch.Tensor:
    """``[B, r*r*C, h, w] -> [B, C, h*r, w*r]`` in TF's DCR order."""
    return DepthToSpaceDCR.apply(x, r)
