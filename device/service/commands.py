"""The device's sub-commands, ``run`` and ``bench``. Light imports only at the top: the runtime loads in run()."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edge_affectsr.cli_args import add_model, add_renamed, add_set, add_subset, check_subset, set_overrides

OFF = "off"
PRINT_HEADER = "The device config this run would use: defaults, then --config, then --set, then flags."
BUNDLE_HELP = "the model bundle: a folder made by `convert` or a shipped name (default: {})"


def _add_common(p: argparse.ArgumentParser) -> None:
    """--model, --config and --set: the device config a command reads."""
    add_model(p, BUNDLE_HELP.format("the config's bundle.path, else the shipped bundle-x4"), old="--bundle")
    p.add_argument("--config", type=Path,
                   help="device config file (TOML or YAML); --set and flags override it (default: none, the defaults)")
    add_set(p, "device config", "detector.score_threshold=0.6")


def _device_config(args: argparse.Namespace, overrides: dict[str, Any] | None = None):
    """The device config: the defaults, then --config, then --set, then ``overrides`` (from flags),
    validated together, so a bad --set key is a ConfigError naming it."""
    from edge_affectsr.device.service.settings import load_device_config  # noqa: PLC0415

    return load_device_config(args.config, {**set_overrides(args), **(overrides or {})})


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """CLI flags as dotted config keys (applied to the file's mapping before validation)."""
    from edge_affectsr.device.service.settings import parse_http, parse_source  # noqa: PLC0415

    out: dict[str, Any] = {}
    if args.model:
        out["bundle.path"] = args.model
    if getattr(args, "source", None):
        capture = parse_source(args.source)
        out["capture.source"] = capture["source"]
        out["capture.newest_frame_wins"] = capture["newest_frame_wins"]
    if getattr(args, "max_frames", None) is not None:
        out["run.max_frames"] = args.max_frames
    if getattr(args, "events_jsonl", None):
        out.update({"jsonl.enabled": False} if args.events_jsonl == OFF else
                   {"jsonl.enabled": True, "jsonl.path": args.events_jsonl})
    if getattr(args, "db", None):
        out.update({"store.enabled": False} if args.db == OFF else {"store.enabled": True, "store.path": args.db})
    if getattr(args, "http", None):
        out.update({f"http.{k}": v for k, v in parse_http(args.http).items()})
    if getattr(args, "trust", None):
        out["trust.keys"] = args.trust
    if getattr(args, "save", None):
        out["outputs.video"] = str(args.save)
    if getattr(args, "report", None):
        out["outputs.report"] = args.report
    return out


def _add_outputs(p: argparse.ArgumentParser, report: str | None = None) -> None:
    p.add_argument("--save", type=Path, metavar="OUT.mp4",
                   help="write the annotated video: boxes, track ids, expressions, the SR faces inset (.mp4 or .avi)")
    p.add_argument("--report", metavar="OUT.csv|-", default=report,
                   help="write one CSV row per upscaled face, naming its source, file and frame; - for stdout "
                        f"(default: {report or 'none'})")


class Run:
    """Run the camera daemon: detect faces, upscale them with the bundle's int8 model, check that the
    expression survived, report one event per face (JSON lines, SQLite, optionally MQTT), serve
    /healthz, /api/stats, /metrics, /api/events and the live view at / (frames and faces shown only
    with preview: true, the default for the built-in clip). With no arguments: the shipped bundle on
    the built-in clip, stopping at its end. SIGTERM/SIGINT stop cleanly; SIGHUP reloads the bundle."""

    help = "run the camera daemon (default: shipped bundle on the built-in clip)"
    examples = ("edge-affectsr run --loop                       # the built-in clip until Ctrl-C; open http://127.0.0.1:8080/",
                "edge-affectsr run --source clip.mp4 --save annotated.mp4 --report faces.csv",
                "edge-affectsr run --model out/bundle-x4 --source 0 --set detector.score_threshold=0.6")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        _add_common(p)
        p.add_argument("--source", help="builtin | picamera | camera index | /dev/videoN | rtsp/http URL | "
                                        "video file | image folder (default: builtin)")
        p.add_argument("--max-frames", type=int, help="stop after N processed frames (default: at the source's end, if any)")
        p.add_argument("--loop", action="store_true", help="start the built-in clip, file or folder again at its end")
        _add_outputs(p)
        p.add_argument("--events-jsonl", metavar="PATH|-|off", help="JSON-lines events: a file, - for stdout (default), or off")
        p.add_argument("--db", metavar="PATH|off", help="SQLite event database (default: events.db), or off")
        p.add_argument("--http", metavar="HOST:PORT|off", help="HTTP API address (default: 127.0.0.1:8080), or off")
        p.add_argument("--trust", action="append", metavar="KEY",
                       help="run only bundles signed by this public key (a .pub file, a folder of them, or project); "
                            "repeatable; replaces the config's trust.keys")
        p.add_argument("--print-config", action="store_true",
                       help="print the config this run would use (defaults + --config + --set + flags) as commented "
                            "YAML, and exit")

    def run(self, args: argparse.Namespace) -> int:
        from edge_affectsr.device.service.settings import render_device_config  # noqa: PLC0415

        if args.max_frames is not None and args.max_frames < 1:
            from edge_affectsr.errors import UserError  # noqa: PLC0415

            raise UserError("--max-frames must be at least 1")
        config = _device_config(args, _overrides(args))
        if args.loop:
            _loop(config)
        if args.print_config:
            sys.stdout.write(render_device_config(config, PRINT_HEADER))
            return 0
        from edge_affectsr.device.service.daemon import run_daemon  # noqa: PLC0415
        from edge_affectsr.device.service.outputs import check_outputs  # noqa: PLC0415

        check_outputs(config)
        return run_daemon(config)


def _loop(config) -> None:
    """``--loop`` on the loaded config: the source starts again at its end (a Pi camera has no end)."""
    from edge_affectsr.errors import UserError  # noqa: PLC0415

    source = config.capture.source
    if not hasattr(source, "loop"):
        raise UserError(f"--loop: a {source.kind} source never ends, so there is nothing to start again")
    source.loop = True


class Process:
    """Process a video file, a folder of images or the built-in clip once, every frame, and exit: one
    CSV row per upscaled face naming its source, file and frame (--report, default stdout), and, if
    asked, the annotated video (--save) and the events as JSON lines (--events-jsonl). The daemon's
    pipeline without its service parts: no HTTP, no database, no live view."""

    help = "process a video file or an image folder once: a per-face CSV, optionally the annotated video"
    examples = ("edge-affectsr process --source photos/ --report faces.csv",
                "edge-affectsr process --source clip.mp4 --save annotated.mp4 > faces.csv")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        _add_common(p)
        p.add_argument("--source", required=True, help="video file | image folder | builtin; required")
        _add_outputs(p, report="-")
        p.add_argument("--events-jsonl", default=OFF, metavar="PATH|-|off", help="also the events as JSON lines (default: off)")
        p.add_argument("--max-frames", type=int, help="stop after N frames (default: every frame)")

    def run(self, args: argparse.Namespace) -> int:
        from edge_affectsr.device.service.daemon import run_daemon  # noqa: PLC0415
        from edge_affectsr.device.service.outputs import check_outputs  # noqa: PLC0415
        from edge_affectsr.device.service.settings import parse_source  # noqa: PLC0415
        from edge_affectsr.errors import UserError  # noqa: PLC0415

        if parse_source(args.source)["newest_frame_wins"]:
            raise UserError(f"process reads a video file, an image folder or builtin to its end; {args.source!r} "
                            "is a live source: use run")
        if args.max_frames is not None and args.max_frames < 1:
            raise UserError("--max-frames must be at least 1")
        batch = {"http.enabled": False, "store.enabled": False, "capture.newest_frame_wins": False}
        config = _device_config(args, {**_overrides(args), **batch})
        check_outputs(config)
        return run_daemon(config)


class Bench:
    """Time the whole device pipeline (decode, detect, landmarks, align, SR, guard, SQLite) on a
    video: fps and per-stage p50/p95 ms with 1 and 2 threads, as markdown tables; --soak-minutes
    adds a run that samples resident memory and reports its growth. Default video: the built-in
    clip (640x480, one face) written to a temporary file."""

    help = "benchmark the device pipeline (fps, per-stage p50/p95, memory soak)"
    examples = ("edge-affectsr bench --seconds 5",
                "edge-affectsr bench --source clip.mp4 --threads 2 --json out/bench.json")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        _add_common(p)
        add_renamed(p, "--source", "--video", type=Path, metavar="VIDEO",
                    help="video file (default: the built-in clip, 640x480)")
        p.add_argument("--seconds", type=float, default=20.0, help="timed seconds per thread count (default: 20)")
        p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
        p.add_argument("--soak-minutes", type=float, help="also run this long with 2 threads, sampling RSS (default: no soak)")
        p.add_argument("--json", type=Path, help="write the results as JSON here")

    def run(self, args: argparse.Namespace) -> int:
        from edge_affectsr.device.service.bench import run_bench  # noqa: PLC0415

        config = _device_config(args)
        bundle = args.model or config.bundle.path
        run_bench(config, bundle, args.source, args.seconds, args.threads, args.soak_minutes, args.json)
        return 0


class CameraEval:
    """Score the camera path on real face photos: each is pasted into a 640x480 frame and taken
    through the device pipeline (BlazeFace, FaceMesh TFLite, aligner, int8 SR); the SR output and
    reference outputs are scored against the aligned HR crop and given to the expression guard.
    --small PRESET:SIZE instead renders each face at SIZE px into a frame degraded as a whole (noise,
    JPEG/H.264) and scores against the clean HR crop, counting the faces the detector misses.
    Prints a markdown table; --json/--markdown save it."""

    help = "score the device pipeline's upscales and its expression guard on real face photos"
    examples = ("edge-affectsr camera-eval --data ../shared/data/celeba/val --limit 20",
                "edge-affectsr camera-eval --data ../shared/data/celeba/val --small jpeg:24 --json out/small.json")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", type=Path, required=True,
                       help="folder of face photos, sub-folders included (e.g. ../shared/data/celeba/val, or the "
                            "per-class ../shared/data/expressions); required")
        add_model(p, BUNDLE_HELP.format("the shipped bundle-x4"), old="--bundle")
        add_subset(p, "photos", limit=150, stride=4, limit_alias="--faces")
        p.add_argument("--json", type=Path, help="write the results as JSON here")
        p.add_argument("--markdown", type=Path, help="write the table here")
        p.add_argument("--fallback", choices=("keypoints", "skip"), default="keypoints",
                       help="faces FaceMesh rejects: align them from the detector's keypoints (default, as the "
                            "device's landmarks.fallback) or skip them")
        small = p.add_argument_group("small faces (--small)")
        small.add_argument("--small", metavar="PRESET[:SIZE]",
                           help="stage each face small in a degraded frame: PRESET in lens, jpeg, h264, camera, camera-hard; "
                                "SIZE = the 128 px HR crop's side in the frame, px (e.g. jpeg:24)")
        small.add_argument("--tiles", metavar="COLS,ROWS",
                           help="detector tile grid for --small, all tiles scanned (default: the device's zoom levels)")
        small.add_argument("--frame", metavar="WxH", default="640x480", help="frame size for --small (default: 640x480)")
        small.add_argument("--seed", type=int, default=0, help="degradation and placement seed for --small (default: 0)")

    def run(self, args: argparse.Namespace) -> int:
        from edge_affectsr.device.service.camera_eval import camera_eval, headline, markdown, write_report  # noqa: PLC0415
        from edge_affectsr.errors import UserError  # noqa: PLC0415

        check_subset(args, min_limit=2)
        if not args.data.is_dir():
            raise UserError(f"--data {args.data} is not a folder")
        report = camera_eval(args.model, args.data, args.limit, args.stride, args.offset, self.small(args), args.fallback)
        if report["mode"] == "large":
            print(headline(report) + "\n")
        print(markdown(report))
        write_report(report, args.json, args.markdown)
        return 0

    def small(self, args: argparse.Namespace):
        """--small/--tiles/--frame/--seed -> a SmallFaces cell, or None (the default, large mode)."""
        from edge_affectsr.device.service.camera_small import SmallFaces  # noqa: PLC0415
        from edge_affectsr.errors import UserError  # noqa: PLC0415

        if args.small is None:
            if args.tiles is not None or args.frame != "640x480" or args.seed != 0:
                raise UserError("--tiles, --frame and --seed go with --small")
            return None
        tiles = self.pair(args.tiles, ",", "--tiles", "COLS,ROWS, e.g. 6,4") if args.tiles else None
        width, height = self.pair(args.frame, "x", "--frame", "WxH, e.g. 640x480")
        return SmallFaces.parse(args.small, tiles, (height, width), args.seed)

    @staticmethod
    def pair(text: str, sep: str, flag: str, form: str) -> tuple[int, int]:
        """``"6,4"`` -> (6, 4); a UserError naming the flag otherwise."""
        from edge_affectsr.errors import UserError  # noqa: PLC0415

        a, _, b = text.partition(sep)
        if not (a.isdigit() and b.isdigit() and int(a) > 0 and int(b) > 0):
            raise UserError(f"{flag} {text!r}: expected {form}")
        return int(a), int(b)


class CrowdBench:
    """Crowd clips built from face photos (each person once, at fixed face widths, drifting slowly,
    camera-degraded as a whole frame) through the device pipeline as the daemon configures it: per clip
    detection recall and precision against the placed boxes, identity switches, fps, per-stage and
    per-face ms, FaceMesh against the keypoint fallback; --candidates adds a detector-only comparison.
    Prints the tables; --json/--markdown/--plot save them (docs/crowd.md)."""

    help = "benchmark the device pipeline on crowd clips (recall, precision, ID switches, fps)"
    examples = ("edge-affectsr crowd-bench --sizes 24,48 --frame-sizes 640x480 --frames 12",
                "edge-affectsr crowd-bench --data ../shared/data/celeba/val --crowd 1,30 --json out/crowd.json",
                "edge-affectsr crowd-bench --data ../shared/data/celeba/val --frame-sizes 1280x720 --sizes 24,32 --seeds 0,1,2")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        _add_common(p)
        p.add_argument("--data", type=Path, help="face photos, one person per CelebA identity (e.g. ../shared/data/celeba/val); "
                                                 "default: the built-in face, repeated")
        p.add_argument("--sizes", default="16,20,24,32,48,64", help="face box widths, px (default: 16,20,24,32,48,64)")
        p.add_argument("--frame-sizes", default="640x480,1280x720", help="frame sizes (default: 640x480,1280x720)")
        add_renamed(p, "--people", "--faces", type=int, default=20, metavar="N",
                    help="people per clip, fewer where they do not fit (default: 20)")
        p.add_argument("--crowd", default="", help="also clips of these many people at the largest frame and 24 px, "
                                                   "e.g. 1,30 (default: none)")
        p.add_argument("--frames", type=int, default=40, help="frames per clip (default: 40)")
        p.add_argument("--degradation", default="jpeg", help="camera model: lens, jpeg, h264, camera, camera-hard or clean (default: jpeg)")
        seed = p.add_mutually_exclusive_group()
        seed.add_argument("--seed", type=int, default=0, help="people, placement and degradation seed (default: 0)")
        seed.add_argument("--seeds", help="run every clip once per seed, e.g. 0,1,2, and pool the label statistics "
                                       "over them with each seed's min and max (instead of --seed)")
        p.add_argument("--threads", type=int, default=2, help="interpreter threads (default: 2)")
        p.add_argument("--candidates", action="store_true", help="also compare detector models and schedules (detector only)")
        p.add_argument("--json", type=Path, help="write the results as JSON here")
        p.add_argument("--markdown", type=Path, help="write the tables here")
        p.add_argument("--plot", type=Path, help="draw recall against face size here (PNG)")

    def run(self, args: argparse.Namespace) -> int:
        from edge_affectsr.device.service.crowd_bench import clip_plan, crowd_bench  # noqa: PLC0415
        from edge_affectsr.device.service.crowd_report import markdown, write_report  # noqa: PLC0415
        from edge_affectsr.errors import UserError  # noqa: PLC0415
        from edge_affectsr.reports import check_output  # noqa: PLC0415

        if args.frames < 1 or args.people < 1 or args.threads < 1:
            raise UserError("--frames, --people and --threads must be at least 1")
        for path, what in ((args.json, "--json"), (args.markdown, "--markdown"), (args.plot, "--plot")):
            check_output(path, what)
        sizes = self.numbers(args.sizes, "--sizes")
        frames = tuple(CameraEval.pair(f, "x", "--frame-sizes", "WxH[,WxH...], e.g. 1280x720") for f in args.frame_sizes.split(","))
        crowd = self.numbers(args.crowd, "--crowd") if args.crowd else ()
        seeds = self.numbers(args.seeds, "--seeds", zero=True) if args.seeds else (args.seed,)
        plan = [spec for seed in dict.fromkeys(seeds)
                for spec in clip_plan(sizes, frames, args.people, args.frames, args.degradation, seed, crowd)]
        config = _device_config(args)
        report = crowd_bench(config, args.model or config.bundle.path, args.data, plan, args.candidates, args.threads)
        print(markdown(report))
        write_report(report, args.json, args.markdown, args.plot)
        return 0

    @staticmethod
    def numbers(text: str, flag: str, zero: bool = False) -> tuple[int, ...]:
        """``"16,20"`` -> (16, 20) (``zero``: 0 allowed too); a UserError naming the flag otherwise."""
        from edge_affectsr.errors import UserError  # noqa: PLC0415

        parts = text.split(",")
        if not all(p.strip().isdigit() and int(p) >= (0 if zero else 1) for p in parts):
            kind = "whole numbers" if zero else "positive whole numbers"
            raise UserError(f"{flag} {text!r}: expected {kind} separated by commas, e.g. {'0,1,2' if zero else '16,24'}")
        return tuple(int(p) for p in parts)
