#!/usr/bin/env bash
# The camera side on arm64, as a Raspberry Pi OS (bookworm) user installs it, under emulation:
#  1. build (4-6 min on an idle machine) or reuse a bare Debian 12 arm64 root (deploy/arm64/root.sh),
#  2. install the [device] extra in it with deploy/INSTALL.md's Raspberry Pi lines (deploy/arm64/pi-install.sh),
#  3. check the venv holds no torch / TensorFlow, run `edge-affectsr run` on the built-in clip
#     (its first ARM64_FRAMES frames: ~15 s each emulated, against ~50 ms on this machine),
#  4. compare its events with the same run on this machine (deploy/arm64/compare_events.py),
#  5. run the device tests that need only the [device] extra (ARM64_TESTS).
# Emulation is 55-90x slower than the host: the times printed here are the check's, never a device's speed.
#   sudo deploy/check-arm64.sh        (make check-arm64; results in out/arm64/)
# Settings: ARM64_ROOT (the cached root, default /var/cache/edge-affectsr/arm64-root), ARM64_MIRROR,
# ARM64_OUT (default out/arm64), ARM64_FRAMES (default 12; the clip has 60), ARM64_TESTS,
# PYTHON (the host venv's python for the reference run).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
OUT=${ARM64_OUT:-$REPO/out/arm64}
ARM64_FRAMES=${ARM64_FRAMES:-12}
# The device tests that need only [device] + pytest, less three that cannot hold here: one reads BlazeFace from
# the installed mediapipe (a workstation package), one times a reader thread against a consumer (emulation
# skews it), one reads the process's RSS from /proc/self/stat (qemu-user fills most of it with zeros); and less
# what took 3 of the 5 emulated minutes for little: the web view's tests run the daemon again, the hostile-query
# one is pure-Python parsing under hypothesis.
ARM64_TESTS=${ARM64_TESTS:-"tests/device/capture tests/device/reporting tests/device/inference/test_track.py
 --deselect tests/device/capture/test_builtin.py::test_the_face_is_detected_in_most_frames
 --deselect tests/device/capture/test_capture.py::test_slow_consumer_gets_the_newest_frames_and_drops_are_counted
 --deselect tests/device/reporting/test_metrics.py::test_exposition_has_histograms_counters_process_metrics_and_a_camera_label
 --ignore=tests/device/reporting/test_web_view.py
 --deselect tests/device/reporting/test_http_hostile.py::test_any_query_is_answered_cleanly"}
# shellcheck source=deploy/arm64/root.sh
source "$REPO/deploy/arm64/root.sh"

started=$SECONDS
lap() { say "$1 ($((SECONDS - started)) s so far)"; }

need_root
[ -x "$PYTHON" ] || die "no host python at $PYTHON for the reference run: make setup first (or set PYTHON)"
command -v git >/dev/null && git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1 || die "$REPO is not a git checkout"
ensure_tools
ensure_binfmt
mkdir -p "$(dirname "$ARM64_ROOT")" "$OUT"
exec 9>"$ARM64_ROOT.lock"
flock -w 1800 9 || die "another check-arm64 holds $ARM64_ROOT.lock"
ensure_root
lap "root ready"

# The source as a clone would have it (tracked and untracked-but-not-ignored files), fresh each run.
stage_source() {
    local dest="$ARM64_ROOT/opt/edge-affectsr"
    rm -rf "$dest" && mkdir -p "$dest/src" "$dest/out"
    git -C "$REPO" ls-files -co --exclude-standard -z \
        | tar -C "$REPO" --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C "$dest/src" -xf -
}

rm -f "$OUT"/*.jsonl "$OUT"/comparison.json
say "reference run on this machine ($(uname -m))"
(cd "$REPO" && "$PYTHON" -m edge_affectsr.cli run --config deploy/arm64/emulated.yaml --max-frames "$ARM64_FRAMES" \
    --events-jsonl "$OUT/x86.jsonl" --db off --http off) \
    >"$OUT/x86.log" 2>&1 || { tail -20 "$OUT/x86.log" >&2; die "the reference run failed (log: $OUT/x86.log)"; }

trap umount_root EXIT
mount_root
configure_network
stage_source
lap "source staged in the root; installing and running under emulation (log: $OUT/arm64.log)"
in_root bash /opt/edge-affectsr/src/deploy/arm64/in-root.sh "$ARM64_FRAMES" "$ARM64_TESTS" >"$OUT/arm64.log" 2>&1 \
    && inside=ok || inside=FAILED
umount_root
grep -E '^== |^(FAILED|ERROR) |passed|failed' "$OUT/arm64.log" >&2 || true
[ "$inside" = ok ] || tail -40 "$OUT/arm64.log" >&2

# The events are compared whenever the daemon got that far, even when a later step failed.
events="$ARM64_ROOT/opt/edge-affectsr/out/arm64.jsonl"
compared=FAILED
[ ! -f "$events" ] || { cp "$events" "$OUT/" && "$PYTHON" "$REPO/deploy/arm64/compare_events.py" "$OUT/x86.jsonl" \
    "$OUT/arm64.jsonl" --json "$OUT/comparison.json" >&2 && compared=ok; }
[ "$inside" = ok ] || die "a step in the arm64 root failed (log: $OUT/arm64.log)"
[ "$compared" = ok ] || die "the arm64 events differ from this machine's, or none were written ($OUT/comparison.json)"
say "passed in $((SECONDS - started)) s (emulated arm64: says nothing about a device's speed)"
