"""The crowd benchmark's tables and its plot of recall against face size.

Why its own module: the benchmark (crowd_bench.py) measures; this turns its JSON into what
docs/crowd.md shows, so the docs can be redrawn from a saved JSON without running anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_affectsr.errors import UserError
from edge_affectsr.reports import write_json, write_text

PER_FACE_STAGES = ("landmarks", "align", "sr", "guard")


def _num(value: float | None, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def table(head: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def _clip_cells(c: dict[str, Any]) -> list[str]:
    return [c["frame"], str(c["face_px"]), str(c["faces"])]


def _seeded(report: dict[str, Any], head: list[str], rows: list[list[str]]) -> str:
    """A per-clip table, with a seed column after the clip's cells when the report ran several seeds."""
    if len(report.get("seeds", [])) < 2:
        return table(head, rows)
    seeds = [str(c.get("seed", "-")) for c in report["clips"]]
    return table([*head[:3], "seed", *head[3:]], [[*row[:3], seed, *row[3:]] for row, seed in zip(rows, seeds)])


def pipeline_table(report: dict[str, Any]) -> str:
    """One row per clip: detection, tracking, speed."""
    head = ["frame", "face px", "faces", "recall %", "recall %, 2nd half", "precision %", "ID switches", "tracks / people",
            "fps", "detect ms p50", "frame ms p50", "ms per upscaled face", "upscaled per frame"]
    rows = [[*_clip_cells(c), _pct(c["recall"]), _pct(c["recall_second_half"]), _pct(c["precision"]), str(c["id_switches"]),
             f"{c['tracks']} / {c['people']}", f"{c['fps']:.1f}", _num(c["latency_ms_p50"].get("detect")),
             _num(c["latency_ms_p50"].get("frame")), _num(c["ms_per_face"], ".2f"), f"{c['upscaled_per_frame']:.1f}"]
            for c in report["clips"]]
    return _seeded(report, head, rows)


def stage_table(report: dict[str, Any]) -> str:
    """p50 ms of each per-face stage, per clip (as the pipeline times them)."""
    stages = [s for s in PER_FACE_STAGES if any(s in c["latency_ms_p50"] for c in report["clips"])]
    rows = [[*_clip_cells(c), *(_num(c["latency_ms_p50"].get(s), ".2f") for s in stages)] for c in report["clips"]]
    return _seeded(report, ["frame", "face px", "faces", *(f"{s} p50 ms" for s in stages)], rows)


def landmark_table(report: dict[str, Any]) -> str:
    """FaceMesh's acceptance and error against the keypoint fallback, per clip."""
    head = ["frame", "face px", "faces", "faces checked", "FaceMesh accepts %", "error px: FaceMesh", "keypoints, same faces",
            "keypoints, all"]
    rows = [[*_clip_cells(c), str(lm["faces_checked"]), _pct(lm["facemesh_accepted"]), _num(lm["error_px_facemesh"]),
             _num(lm["error_px_keypoints_where_facemesh_accepted"]), _num(lm["error_px_keypoints"])]
            for c in report["clips"] for lm in [c["landmarks"]]]
    return _seeded(report, head, rows)


def label_table(report: dict[str, Any]) -> str:
    """Per clip: flicker of the raw and the smoothed label, and agreement of each with the HR label."""
    head = ["frame", "face px", "faces", "labelled faces", "track s", "flicker raw /s", "flicker smoothed /s",
            "smoothed / raw", "agrees with HR % raw", "agrees with HR % smoothed"]
    rows = [[*_clip_cells(c), str(lb["labelled_faces"]), _num(lb["track_seconds"]), _num(lb["flicker_raw"], ".2f"),
             _num(lb["flicker_smoothed"], ".2f"),
             _num(lb["flicker_smoothed"] / lb["flicker_raw"] if lb["flicker_raw"] else None, ".2f"),
             _pct(lb["agreement_raw"]), _pct(lb["agreement_smoothed"]), _pct(lb.get("agreement_vote"))]
            for c in report["clips"] for lb in [c["labels"]]]
    return _seeded(report, [*head, "track vote agrees %"], rows)


def _span(pair: list[float] | None, scale: float = 1.0, fmt: str = ".1f") -> str:
    return "-" if pair is None else f"{format(scale * pair[0], fmt)} to {format(scale * pair[1], fmt)}"


def pooled_label_table(report: dict[str, Any]) -> str:
    """Per clip kind: the label statistics pooled over the seeds, and each seed's range."""
    head = ["frame", "face px", "faces", "seeds", "labelled faces", "flicker raw /s", "flicker smoothed /s",
            "smoothed / raw (seeds)", "agrees % raw (seeds)", "agrees % smoothed (seeds)",
            "smoothed - raw, points (seeds)", "track vote agrees %"]
    rows = [[*_clip_cells(r), ",".join(map(str, r["seeds"])), str(r["labelled_faces"]), _num(r["flicker_raw"], ".2f"),
             _num(r["flicker_smoothed"], ".2f"),
             f"{_num(r['flicker_smoothed'] / r['flicker_raw'] if r['flicker_raw'] else None, '.2f')} "
             f"({_span(rng['flicker_ratio'], fmt='.2f')})",
             f"{_pct(r['agreement_raw'])} ({_span(rng['agreement_raw'], 100)})",
             f"{_pct(r['agreement_smoothed'])} ({_span(rng['agreement_smoothed'], 100)})",
             f"{_num(None if r['agreement_raw'] is None else 100 * (r['agreement_smoothed'] - r['agreement_raw']), '+.1f')} "
             f"({_span(rng['agreement_gain'], 100, '+.1f')})", _pct(r["agreement_vote"])]
            for r in report["labels_pooled"] for rng in [r["seed_range"]]]
    return table(head, rows)


def candidate_table(report: dict[str, Any]) -> str:
    """Detector candidates: recall per face size (each frame size), precision, full-scan cost."""
    cands = report.get("candidates") or []
    if not cands:
        return ""
    frames = sorted({c["frame"] for c in cands[0]["clips"]}, key=lambda f: int(f.split("x")[0]))
    sizes = sorted({c["face_px"] for c in cands[0]["clips"]})
    rows = []
    for cand in cands:
        for frame in frames:
            clips = [c for c in cand["clips"] if c["frame"] == frame]
            by_size = most_faces_per_size(clips)
            tp, fp = sum(c["tp"] for c in clips), sum(c["fp"] for c in clips)
            rows.append([cand["label"], frame, *(_pct(by_size[s]["recall"]) if s in by_size else "-" for s in sizes),
                         _pct(tp / (tp + fp) if tp + fp else None), str(clips[0]["calls"]),
                         f"{max(c['ms_full_scan_p50'] for c in clips):.0f}"])
    head = ["detector", "frame", *(f"recall % {s} px" for s in sizes), "precision %", "calls per full scan", "ms per full scan"]
    return table(head, rows)


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    parts = [f"Crowd clips from {report['data']} ({report['people']} people), bundle {report['bundle']}, "
             f"{report['threads']} threads, {machine['cpus']} CPUs, load average {machine['load_avg']} at the end. "
             f"Matching: {report['match_rule']}.", "", pipeline_table(report), "", "Per-face stages:", "",
             stage_table(report), "", "FaceMesh on the frame against the keypoint fallback (alignment error in px of "
             "the 128 px crop, against FaceMesh on the clean face):", "", landmark_table(report)]
    if all("labels" in c for c in report["clips"]):  # reports saved before the label check have none
        parts += ["", f"Expression labels of the upscaled true faces ({_smoothing(report)}): label changes per "
                  "track-second, raw (per frame) and smoothed, and how often each is the critic's label of the "
                  "person's HR crop (and how often each track's most frequent raw label is):", "", label_table(report)]
    if report.get("labels_pooled"):
        parts += ["", f"The same, pooled over seeds {', '.join(map(str, report['seeds']))} (counts added up; in "
                  "brackets each seed's lowest and highest):", "", pooled_label_table(report)]
    if report.get("candidates"):
        parts += ["", f"Detector candidates (detector only, every region of the schedule, every {report['candidate_stride']}th frame):",
                  "", candidate_table(report)]
    return "\n".join(parts) + "\n"


def _smoothing(report: dict[str, Any]) -> str:
    """The smoothing filter in words, e.g. ``smoothing one_euro, min_cutoff_hz 0.5, beta 0.2``."""
    cfg = report.get("smoothing") or {}
    keys = {"one_euro": ("min_cutoff_hz", "beta"), "ema": ("alpha",)}.get(cfg.get("method"), ())
    return ", ".join([f"smoothing {cfg.get('method', 'unknown')}", *(f"{k} {cfg[k]}" for k in keys)])


def plot(report: dict[str, Any], path: Path) -> None:
    """Recall against face size: the pipeline per frame size (solid), the candidates at the largest frame (dashed)."""
    try:
        import matplotlib  # noqa: PLC0415 - only the plot needs it

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install matplotlib") from None
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for frame in sorted({c["frame"] for c in report["clips"]}, key=lambda f: int(f.split("x")[0])):
        _line(ax, [c for c in report["clips"] if c["frame"] == frame], f"device pipeline, {frame}, whole clips", "-", "o")
    if report.get("candidates"):
        largest = max((c["frame"] for c in report["clips"]), key=lambda f: int(f.split("x")[0]))
        for cand in report["candidates"]:
            _line(ax, [c for c in cand["clips"] if c["frame"] == largest], f"{cand['label']}, {largest}, full scan", "--", ".")
    ax.axhline(0.9, color="grey", lw=0.8, ls=":")
    ax.axhline(0.7, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="face box width in the frame, px", ylabel="detection recall", ylim=(-0.02, 1.02), xscale="log")
    sizes = sorted({c["face_px"] for c in report["clips"]})
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.minorticks_off()
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def most_faces_per_size(clips: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Face size -> its clip; where several clips share a size (the crowd-size clips), the one with most faces."""
    best: dict[int, dict[str, Any]] = {}
    for c in clips:
        if c["face_px"] not in best or c["faces"] > best[c["face_px"]]["faces"]:
            best[c["face_px"]] = c
    return best


def _line(ax: Any, clips: list[dict[str, Any]], label: str, style: str, marker: str) -> None:
    best = most_faces_per_size(clips)
    sizes = sorted(best)
    ax.plot(sizes, [best[s]["recall"] for s in sizes], style, marker=marker, label=label)


def write_report(report: dict[str, Any], json_path: Path | None, markdown_path: Path | None, plot_path: Path | None) -> None:
    if json_path is not None:
        write_json(json_path, report)
    if markdown_path is not None:
        write_text(markdown_path, markdown(report))
    if plot_path is not None:
        plot(report, plot_path)
