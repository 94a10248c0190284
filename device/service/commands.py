"""The device's sub-commands, ``run`` and ``bench``. Light imports only at the top: the runtime loads in run()."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

OFF = "off"
PRINT_HEADER = "The device config this run would use: defaults, then --config, then flags."


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", help="model bundle folder (default: the shipped bundle-x4)")
    p.add_argument("--config", type=Path, help="device config file (TOML or YAML); flags override it")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """CLI flags as dotted config keys (applied to the file's mapping before validation)."""
    from edge_affectsr.device.service.settings import parse_http, parse_source  # noqa: PLC0415

    out: dict[str, Any] = {}
    if args.bundle:
        out["bundle.path"] = args.bundle
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
    return out


class Run:
    """Run the camera daemon: detect faces, upscale them with the bundle's int8 model, check that the
    expression survived, report one event per face (JSON lines, SQLite, optionally MQTT), serve
    /healthz, /api/stats, /metrics and /api/events. With no arguments: the shipped bundle on the
    built-in clip, stopping at its end. SIGTERM/SIGINT stop cleanly; SIGHUP reloads the bundle."""

    help = "run the camera daemon (default: shipped bundle on the built-in clip)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        _add_common(p)
        p.add_argument("--source", help="builtin | picamera | camera index | /dev/videoN | rtsp/http URL | "
                                        "video file | image folder (default: builtin)")
        p.add_argument("--max-frames", type=int, help="stop after N processed frames")
        p.add_argument("--events-jsonl", metavar="PATH|-|off", help="JSON-lines events: a file, - for stdout (default), or off")
        p.add_argument("--db", metavar="PATH|off", help="SQLite event database (default: events.db), or off")
        p.add_argument("--http", metavar="HOST:PORT|off", help="HTTP API address (default: 127.0.0.1:8080), or off")
        p.add_argument("--print-config", action="store_true",
                       help="print the config this run would use (defaults + --config + flags) as commented YAML, and exit")

    def run(self, args: argparse.Namespace) -> int:
        from edge_affectsr.device.service.settings import load_device_config, render_device_config  # noqa: PLC0415

        if args.max_frames is not None and args.max_frames < 1:
            from edge_affectsr.errors import UserError  # noqa: PLC0415

            raise UserError("--max-frames must be at least 1")
        config = load_device_config(args.config, _overrides(args))
        if args.print_config:
            sys.stdout.write(render_device_config(config, PRINT_HEADER))
            return 0
        from edge_affectsr.device.service.daemon import run_daemon  # noqa: PLC0415

        return run_daemon(config)


class Bench:
    """Time the whole device pipeline (decode, detect, landmarks, align, SR, guard, SQLite) on a
    video: fps and per-stage p50/p95 ms with 1 and 2 threads, as markdown tables; --soak-minutes
    adds a run that samples resident memory and reports its growth. Default video: the built-in
    clip (640x480, one face) written to a temporary file."""

    help = "benchmark the device pipeline (fps, per-stage p50/p95, memory soak)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        _add_common(p)
        p.add_argument("--video", type=Path, help="video file (default: the built-in clip, 640x480)")
        p.add_argument("--seconds", type=float, default=20.0, help="timed seconds per thread count (default: 20)")
        p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
        p.add_argument("--soak-minutes", type=float, help="also run this long with 2 threads, sampling RSS")
        p.add_argument("--json", type=Path, help="write the results as JSON here")

    def run(self, args: argparse.Namespace) -> int:
        from edge_affectsr.device.service.bench import run_bench  # noqa: PLC0415
        from edge_affectsr.device.service.settings import load_device_config  # noqa: PLC0415

        config = load_device_config(args.config, {})
        bundle = args.bundle or config.bundle.path
        run_bench(config, bundle, args.video, args.seconds, args.threads, args.soak_minutes, args.json)
        return 0


class CameraEval:
    """Score the camera path on real face photos: each is pasted into a 640x480 frame and taken
    through the device pipeline (BlazeFace, FaceMesh TFLite, aligner, int8 SR); the SR output and
    reference outputs are scored against the aligned HR crop and given to the expression guard.
    --small PRESET:SIZE instead renders each face at SIZE px into a frame degraded as a whole (noise,
    JPEG/H.264) and scores against the clean HR crop, counting the faces the detector misses.
    Prints a markdown table; --json/--markdown save it."""

    help = "score the device pipeline's upscales and its expression guard on real face photos"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", type=Path, required=True,
                       help="folder of face photos, sub-folders included (e.g. ../shared/data/celeba/val, or the per-class ../shared/data/expressions)")
        p.add_argument("--bundle", help="model bundle folder (default: the shipped bundle-x4)")
        p.add_argument("--faces", type=int, default=150, help="how many photos (default: 150)")
        p.add_argument("--stride", type=int, default=4, help="take every Nth photo in path order (default: 4)")
        p.add_argument("--offset", type=int, default=0, help="start at this photo (default: 0; 2 gives a disjoint set)")
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
                           help="detector tile grid for --small, all tiles scanned (default: the device's, 3,2)")
        small.add_argument("--frame", metavar="WxH", default="640x480", help="frame size for --small (default: 640x480)")
        small.add_argument("--seed", type=int, default=0, help="degradation and placement seed for --small (default: 0)")

    def run(self, args: argparse.Namespace) -> int:
        from edge_affectsr.device.service.camera_eval import camera_eval, headline, markdown, write_report  # noqa: PLC0415
        from edge_affectsr.errors import UserError  # noqa: PLC0415

        if args.faces < 2 or args.stride < 1 or args.offset < 0:
            raise UserError("--faces must be at least 2, --stride at least 1 and --offset at least 0")
        if not args.data.is_dir():
            raise UserError(f"--data {args.data} is not a folder")
        report = camera_eval(args.bundle, args.data, args.faces, args.stride, args.offset, self.small(args), args.fallback)
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
