"""The FER2013 mini-Xception (Arriaga et al. 2017) in PyTorch, with TensorFlow's asymmetric
``'same'`` padding reproduced so that the Keras weights give the Keras outputs (to float32 precision)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3  # Keras default; PyTorch's is 1e-5


def tf_same_pad(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad ``[B,C,H,W]`` exactly as TensorFlow's ``padding='same'`` does for a ``kernel``/``stride`` op.

    TF pads ``max((ceil(n/s)-1)*s + k - n, 0)`` in total and puts the odd pixel at the bottom/right,
    unlike PyTorch's symmetric ``padding=``; for the mini-Xception max-pools that changes every
    pooled value near the border. Max-pooling must pad with ``-inf`` (TF ignores padded cells).
    """
    pads = []
    for n in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
        total = max((-(-int(n) // stride) - 1) * stride + kernel - int(n), 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


class TFSameMaxPool2d(nn.Module):
    """``MaxPooling2D(pool, stride, padding='same')`` of Keras. ``[B,C,H,W] -> [B,C,ceil(H/s),ceil(W/s)]``."""

    def __init__(self, kernel_size: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = tf_same_pad(x, self.kernel_size, self.stride, value=float("-inf"))
        return F.max_pool2d(x, self.kernel_size, self.stride)


class SeparableConv2d(nn.Module):
    """Keras ``SeparableConv2D`` (3x3 depthwise, then 1x1 pointwise, no bias). ``[B,Cin,H,W] -> [B,Cout,H,W]``."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_ch, in_ch, kernel_size, padding=kernel_size // 2, groups=in_ch,
                                   bias=False)
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class XceptionBlock(nn.Module):
    """Mini-Xception residual module. ``[B,Cin,H,W] -> [B,Cout,ceil(H/2),ceil(W/2)]``.

    main: sep3x3-BN-ReLU-sep3x3-BN-maxpool3x3/2 ; shortcut: conv1x1/2-BN ; output = main + shortcut.
    (A 1x1 stride-2 conv needs no padding under TF 'same', so plain ``nn.Conv2d`` matches it.)
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=2, bias=False),
                                      nn.BatchNorm2d(out_ch, eps=BN_EPS))
        self.body = nn.Sequential(
            SeparableConv2d(in_ch, out_ch), nn.BatchNorm2d(out_ch, eps=BN_EPS), nn.ReLU(inplace=True),
            SeparableConv2d(out_ch, out_ch), nn.BatchNorm2d(out_ch, eps=BN_EPS),
            TFSameMaxPool2d(3, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class MiniXception(nn.Module):
    """FER2013 mini-Xception. ``[B,1,64,64]`` grey in ``[-1,1]`` -> logits ``[B,num_classes]``.

    Feature maps after the stem and each block for a 64x64 input: 8x60x60, 16x30x30, 32x15x15,
    64x8x8, 128x4x4. The Keras model ends in softmax; here ``forward`` returns the pre-softmax logits
    (the global average of the last conv), which is what losses want.
    """

    def __init__(self, num_classes: int = 7, in_ch: int = 1, stem_ch: int = 8,
                 widths: Sequence[int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_ch, stem_ch, 3, bias=False), nn.BatchNorm2d(stem_ch, eps=BN_EPS), nn.ReLU(inplace=True),
            nn.Conv2d(stem_ch, stem_ch, 3, bias=False), nn.BatchNorm2d(stem_ch, eps=BN_EPS), nn.ReLU(inplace=True),
        )
        chans = [stem_ch, *widths]
        self.blocks = nn.ModuleList(XceptionBlock(a, b) for a, b in zip(chans[:-1], chans[1:]))
        self.head = nn.Conv2d(chans[-1], num_classes, 3, padding=1, bias=True)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of the residual blocks, shallow to deep (for perceptual/feature losses)."""
        feats, x = [], self.stem(x)
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x)[-1]).mean(dim=(2, 3))
