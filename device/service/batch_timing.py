"""Per-face time of the SR model and the FER critic: one call per face against all a frame's faces in one
call (``edge-affectsr bench`` prints it under its fps table).

Why apart from the pipeline's stage timings: those mix in FaceMesh, alignment and the guard's
schedule; this isolates what batching changes. The faces are real: the built-in clip's face at
``faces`` sizes and places, aligned by the device pipeline. The ways are interleaved call by call,
so a busy CPU slows them alike, and p50 over ``repeats`` rounds is reported:

* SR ``float``: one face per call through ``run_float`` and ``to_uint8`` (the conversion before
  frame batching); ``one``: one face per call; ``batch``: one call for all the faces
  (:meth:`~edge_affectsr.runtime.sr.TFLiteSR.batch`; a graph with no batch dimension runs one invoke per
  face inside it, and ``sr_batched`` says which happened);
* critic ``one``: one face per call; ``batch``: the SR outputs and their bicubic twins (2 x faces
  images, what the guard gives it per frame) in one call at batch 2 x faces.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from edge_affectsr.device.capture.builtin import BuiltinSequence
from edge_affectsr.device.capture.frame import Frame
from edge_affectsr.device.inference.pipeline import Pipeline
from edge_affectsr.protocol import bicubic_up
from edge_affectsr.runtime.bundle_models import LoadedBundle
from edge_affectsr.runtime.sr import to_uint8


def clip_faces(bundle: LoadedBundle, faces: int) -> tuple[np.ndarray, np.ndarray]:
    """``faces`` aligned LR faces ``[N, h, w, 3]`` and their SR landmarks ``[N, K, 2]`` from the built-in clip."""
    seq, pipeline = BuiltinSequence(faces, face_px=(120, 170)), Pipeline(bundle)
    aligned = [f.aligned for i in range(faces) for f in pipeline.process(Frame(i, i / 25, seq.render(i))).faces]
    return np.stack([a.lr for a in aligned]), np.stack([a.landmarks_full[bundle.nodes] for a in aligned])


def per_face_ms(bundle: LoadedBundle, faces: int = 8, repeats: int = 30) -> dict[str, Any]:
    """p50 ms per face of each way (module doc), measured on ``bundle``'s own interpreters."""
    sr, critic = bundle.sr.runner, bundle.critic
    lr, lm = clip_faces(bundle, faces)
    outputs = sr.batch(lr, lm)
    images = [*outputs, *(bicubic_up(x, outputs.shape[1]) for x in lr)]

    def float_path() -> None:
        for x, pts in zip(lr, lm):
            out = sr.model.run_float(**{sr.img.name: x[None].astype(np.float32) / 255.0,
                                        sr.lm.name: pts[None].astype(np.float32)})
            to_uint8(out[sr.out.name])

    ways: dict[str, tuple[Callable[[], object], int]] = {
        "sr_float": (float_path, len(lr)),
        "sr_one": (lambda: [sr(x, pts) for x, pts in zip(lr, lm)], len(lr)),
        "sr_batch": (lambda: sr.batch(lr, lm), len(lr)),
        "critic_one": (lambda: [critic.probabilities(x) for x in images], len(images)),
        "critic_batch": (lambda: critic.probabilities_batch(images), len(images)),
    }
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeats):
        for name, (fn, n) in ways.items():
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) * 1000 / n)
    report = {name: round(float(np.median(v)), 3) for name, v in samples.items()}
    return {"faces": len(lr), **report, "sr_batched": sr.runner.batching}
