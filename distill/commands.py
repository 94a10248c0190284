"""The workstation's sub-commands. Light imports only at the top: the heavy modules load in run()."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_affectsr.cli_args import MODEL_KINDS, add_model, add_renamed, add_set, add_subset, check_subset
from edge_affectsr.errors import UserError

DEFAULT_MODEL = "teacher-x4"


def add_training_arguments(p: argparse.ArgumentParser, config: str, out: str) -> None:
    """The options every training command shares."""
    p.add_argument("--config", type=Path, default=Path(__file__).parent / "configs" / config,
                   help=f"training config (YAML; default: the shipped {config})")
    p.add_argument("--data", type=Path, required=True,
                   help="folder of training faces (plain, CelebA, FFHQ or Helen layout); required")
    p.add_argument("--val", type=Path, help="folder of validation faces (default: hold out data.val_faces of --data)")
    p.add_argument("--out", type=Path, default=Path(out),
                   help=f"run folder (default: {out}): last.pt (resumable), model.pt (latest), best.pt (best val PSNR), "
                        "config.yaml, metrics.csv, train.log; draw its curves with `edge-affectsr plot`")
    p.add_argument("--iterations", type=int, help="override train.iterations (default: the config's)")
    add_set(p, "training config", "train.lr=2e-4 --set loss.feature=0.1")
    p.add_argument("--init", metavar="CKPT",
                   help="start from this checkpoint's weights (path or shipped name; not --model: the model being "
                        "trained is the config's; it may add or leave out branches, e.g. student prior_grid / film_gate: "
                        "those start fresh or are dropped, as logged) (default: fresh weights)")


def trained(train, args: argparse.Namespace, **kwargs) -> int:
    """Run a training function with the run's log in its folder, then print the summary table."""
    import os

    from edge_affectsr.distill.run_folder import run_log, summary_table

    with run_log(args.out, enabled=os.environ.get("RANK", "0") == "0"):
        result = train(data=args.data, out=args.out, val=args.val, iterations=args.iterations, overrides=args.set,
                       init=init_checkpoint(args), **kwargs)
    print(summary_table(result, args.out))
    return 0


def init_checkpoint(args: argparse.Namespace) -> Path | None:
    from edge_affectsr.models import resolve_model

    return resolve_model(args.init) if args.init else None


class TrainTeacher:
    """Train the full AffectSRNet teacher. Re-running with the same --out resumes from its last
    checkpoint; several processes: torchrun --nproc-per-node N -m edge_affectsr.cli train-teacher ..."""

    help = "train the full AffectSRNet teacher"
    examples = ("edge-affectsr train-teacher --data ../shared/data/celeba/train --out runs/teacher",
                "edge-affectsr train-teacher --data ../shared/data/celeba/train --iterations 2000 --set train.lr=2e-4")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        add_training_arguments(p, "teacher_x4.yaml", "runs/teacher")

    def run(self, args: argparse.Namespace) -> int:
        from edge_affectsr.distill.train_teacher import train_teacher

        return trained(train_teacher, args, config=args.config)


class Evaluate:
    """Score bicubic and models on faces under the evaluation protocol (HR = centre square,
    Lanczos to 128; LR = bicubic to 128/scale). Prints a markdown table; --json and --grid save it."""

    help = "compare bicubic and models: PSNR, SSIM, expression agreement, KL, ECM"
    examples = ("edge-affectsr eval --model student-x4 --model bundle-x4",
                "edge-affectsr eval --model student-x4 --data ../shared/data/celeba/val --limit 200 --json out/eval.json")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        add_model(p, f"a model to compare: {MODEL_KINDS}; repeatable (default: {DEFAULT_MODEL})", action="append")
        p.add_argument("--data", type=Path, help="folder of HR faces, or one face photo (default: the built-in face)")
        p.add_argument("--scale", type=int, default=4, choices=(4, 8), help="upscaling factor (default: 4)")
        add_subset(p, "faces")
        p.add_argument("--degradation", action="append", metavar="PRESET[:SIZE]",
                       help="how the LR faces are made: clean (the protocol, default), a camera preset (lens, jpeg, h264, camera, "
                            "camera-hard) at a face-crop side in px, e.g. jpeg:24, or grid (clean + lens/jpeg/h264 at 32, 24, 16 px); "
                            "repeatable: one table per cell and a summary (docs/camera.md)")
        p.add_argument("--json", type=Path, help="write the results as JSON here")
        p.add_argument("--grid", type=Path, help="write a picture LR | bicubic | models | HR here (PNG); outputs whose "
                       "expression differs from HR's are marked red")
        p.add_argument("--grid-rows", type=int, metavar="N",
                       help="faces in the --grid picture, spread over the set (default: 6; with several "
                            "--degradation cells: faces per cell, default 2)")
        p.add_argument("--markdown", type=Path, help="also write the table here")
        p.add_argument("--mean-landmarks", action="store_true",
                       help="give every model the mean face shape instead of each face's FaceMesh landmarks "
                            "(as when FaceMesh fails): how much does a model use its landmarks?")
        p.add_argument("--paired", metavar="MODEL",
                       help="also compare every model with this one (a --model value, or bicubic) face by face: "
                            "differences with 95%% bootstrap intervals")
        p.add_argument("--seeds", action="store_true",
                       help="also average seed replicas (a model X and files named X-s1.pt, X-s2.pt, ... in any "
                            "folder): seed means with their min-max, and --paired between seed means")

    def run(self, args: argparse.Namespace) -> int:
        from edge_affectsr.builtin_face import FACE_PATH
        from edge_affectsr.distill.camera_benchmark import expand
        from edge_affectsr.reports import check_output
        from edge_affectsr.runtime.degradation import parse_degradation

        for flag in ("json", "markdown", "grid"):  # before the evaluation, not after it
            check_output(getattr(args, flag), f"--{flag}")
        data, models = args.data or FACE_PATH, args.model or [DEFAULT_MODEL]
        choices = ["bicubic", *models]
        if args.paired is not None and args.paired not in choices:
            raise UserError(f"--paired {args.paired!r} must be one of the compared models: {', '.join(choices)}")
        check_subset(args)
        if args.grid_rows is not None and args.grid_rows < 1:
            raise UserError("--grid-rows must be at least 1")
        try:
            specs = expand(args.degradation or ["clean"])
            for spec in specs:
                parse_degradation(spec)
        except ValueError as e:
            raise UserError(f"--degradation: {e}") from None
        paired = None if args.paired is None else choices.index(args.paired)
        if len(specs) == 1:
            return self._one_cell(args, data, models, specs[0], paired)
        return self._cells(args, data, models, specs, paired)

    def _options(self, args: argparse.Namespace) -> dict:
        return dict(limit=args.limit, stride=args.stride, offset=args.offset, mean_landmarks=args.mean_landmarks, seeds=args.seeds)

    def _one_cell(self, args: argparse.Namespace, data: Path, models: list[str], spec: str, paired: int | None) -> int:
        from edge_affectsr.distill.eval_picture import draw_grid
        from edge_affectsr.distill.evaluate import evaluate, tables
        from edge_affectsr.reports import write_json, write_text

        report, faces, images, (hr_labels, names) = evaluate(models, data, args.scale, degradation=spec, **self._options(args))
        table = tables(report, paired, args.seeds)
        found = "mean face shape for every face" if args.mean_landmarks else f"FaceMesh found {report['landmarks_found_lr']} on LR"
        labelled = "" if report["hr_fer_accuracy"] is None else f"; the critic's FER accuracy on HR: {report['hr_fer_accuracy']:.3f}"
        print(f"\n{report['faces']} faces from {data}, x{args.scale}, LR: {report['degradation']} "
              f"({found}; agreement = top-1 expression of SR equals HR's{labelled})\n")
        print(table)
        if args.json:
            write_json(args.json, report)
        if args.markdown:
            write_text(args.markdown, table + "\n")
        if args.grid:
            draw_grid(faces, images, hr_labels, names, args.grid, rows=args.grid_rows or 6, files=report["files"])
            print(f"picture: {args.grid}")
        return 0

    def _cells(self, args: argparse.Namespace, data: Path, models: list[str], specs: list[str], paired: int | None) -> int:
        from edge_affectsr.distill.camera_benchmark import evaluate_cells, summary_table
        from edge_affectsr.distill.eval_picture import draw_cells
        from edge_affectsr.distill.evaluate import tables
        from edge_affectsr.reports import write_json, write_text

        results = evaluate_cells(models, data, args.scale, specs, **self._options(args))
        reports = [r[0] for r in results]
        sections = [f"### {rep['degradation']} ({rep['faces']} faces, FaceMesh found {rep['landmarks_found_lr']} on LR)\n\n"
                    + tables(rep, paired, args.seeds) for rep in reports]
        summary = summary_table(reports)
        print(f"\n{reports[0]['faces']} faces from {data}, x{args.scale}, {len(specs)} LR conditions\n\n{summary}")
        if args.json:
            write_json(args.json, {"cells": reports})
        if args.markdown:
            write_text(args.markdown, "\n\n".join([summary, *sections]) + "\n")
        if args.grid:
            draw_cells(results, args.grid, faces_per_cell=args.grid_rows or 2)
            print(f"picture: {args.grid}")
        return 0


class Upscale:
    """Upscale LR face images (square crops; any size, unless the model takes one: a bundle, or a
    student with a landmark prior, takes 32 px for x4) to PNGs with the same names in the --out folder."""

    help = "upscale a folder of LR faces to SR PNGs"
    examples = ("edge-affectsr upscale --source lr_faces/ --out sr_faces/",
                "edge-affectsr upscale --source lr_faces/ --out sr_faces/ --model bundle-x4 --overwrite")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        add_renamed(p, "--source", "IN_DIR", required=True, type=Path, metavar="DIR",
                    help="folder of LR face crops; required")
        add_renamed(p, "--out", "OUT_DIR", required=True, type=Path, metavar="DIR",
                    help="where the PNGs go (created); required")
        add_model(p, f"{MODEL_KINDS} (default: {DEFAULT_MODEL})", default=DEFAULT_MODEL)
        p.add_argument("--overwrite", action="store_true", help="replace existing outputs")

    def run(self, args: argparse.Namespace) -> int:
        from edge_affectsr.distill.upscale import upscale_folder
        from edge_affectsr.reports import check_output

        check_output(args.out, "--out", folder=True)
        summary = upscale_folder(args.source, args.out, args.model, args.overwrite)
        if not summary["upscaled"]:
            skipped = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in summary.items() if v and k != "upscaled")
            raise UserError(f"nothing upscaled from {args.source} ({skipped or 'no usable image'}; see the warnings above)")
        return 0


class Distill:
    """Distil a teacher into the small edge student (configs: distill/configs/student_x4*.yaml).
    Re-running with the same --out resumes from its last checkpoint."""

    help = "distil the teacher into the edge student"
    examples = ("edge-affectsr distill --data ../shared/data/celeba/train --out runs/student",
                "edge-affectsr distill --teacher runs/teacher/best.pt --data ../shared/data/celeba/train --init student-x4")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--teacher", default=DEFAULT_MODEL,
                       help=f"the teacher: checkpoint or shipped name (not --model: the student being trained is the "
                            f"config's) (default: {DEFAULT_MODEL})")
        add_training_arguments(p, "student_x4.yaml", "runs/student")

    def run(self, args: argparse.Namespace) -> int:
        from edge_affectsr.distill.train_student import distill_student

        return trained(distill_student, args, config=args.config, teacher_ref=args.teacher)


class Plot:
    """Draw a training run's curves (its metrics.csv) to a PNG: the loss terms, the learning rate,
    and validation PSNR and expression agreement. Several runs: their curves on the same axes."""

    help = "draw a training run's loss, learning-rate and validation curves to PNG"
    examples = ("edge-affectsr plot runs/student_x4",
                "edge-affectsr plot runs/student_x4 runs/student_x4_ft --out out/curves.png")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR", help="training run folder(s) with a metrics.csv")
        p.add_argument("--out", type=Path, help="the PNG (default: RUN_DIR/curves.png of the first run)")
        p.add_argument("--smooth", type=int, default=50, metavar="N",
                       help="loss curves as running means over N iterations (default: 50; 1: raw)")

    def run(self, args: argparse.Namespace) -> int:
        from edge_affectsr.distill.plot_run import plot_runs
        from edge_affectsr.reports import check_output

        out = args.out or args.runs[0] / "curves.png"
        check_output(out, "--out")
        plot_runs(args.runs, out, smooth=args.smooth)
        print(f"curves: {out}")
        return 0
