#!/bin/bash
# Runs inside the arm64 root (deploy/check-arm64.sh): install as a Pi user does, prove the venv has
# no workstation stack, run the daemon on the built-in clip, then the device tests. Every step's
# output goes to stdout; results land in /opt/edge-affectsr/out. Usage: in-root.sh FRAMES "TEST PATHS"
set -euo pipefail
SRC=/opt/edge-affectsr/src
VENV=/opt/edge-affectsr/venv
OUT=/opt/edge-affectsr/out
FRAMES=$1
TESTS=$2
step() { echo "== $(date +%T) $*"; }

cd "$SRC"
step "install: deploy/arm64/pi-install.sh (deploy/INSTALL.md, Raspberry Pi OS)"
bash deploy/arm64/pi-install.sh

step "the venv has no workstation stack, and headless OpenCV imports without libGL"
"$VENV/bin/python" - <<'EOF'
import importlib.util, platform, sys
import cv2
present = [m for m in ("torch", "tensorflow", "mediapipe", "onnxruntime") if importlib.util.find_spec(m)]
if present:
    sys.exit(f"the [device] install pulled in {present}: the camera must not carry the workstation stack")
if platform.machine() != "aarch64":
    sys.exit(f"not running as aarch64 ({platform.machine()}): the check proves nothing")
print(f"{platform.machine()} Python {platform.python_version()}, cv2 {cv2.__version__}: no torch, TensorFlow, "
      "mediapipe or onnxruntime")
EOF
if ls /usr/lib/aarch64-linux-gnu/libGL.so.1 2>/dev/null; then echo "libGL is in the root: it no longer proves headless"; exit 1; fi

step "edge-affectsr run on the built-in clip ($FRAMES frames)"
"$VENV/bin/edge-affectsr" run --config deploy/arm64/emulated.yaml --max-frames "$FRAMES" \
    --events-jsonl "$OUT/arm64.jsonl" --db off --http off

step "device tests: $TESTS"
"$VENV/bin/pip" install -q -c requirements/constraints.txt pytest hypothesis
# shellcheck disable=SC2086
"$VENV/bin/python" -m pytest -q -p no:cacheprovider --durations=5 $TESTS
