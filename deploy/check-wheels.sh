#!/usr/bin/env bash
# Does the camera side install from prebuilt wheels where the cameras are? For Python 3.10-3.13 on
# aarch64 (Raspberry Pi OS, Jetson) and x86_64, resolve `-c requirements/constraints.txt '.[device]'`
# with pip's --dry-run and --only-binary=:all: (nothing compiled on a device), against the index,
# for glibc <= 2.35 (JetPack 6 / Ubuntu 22.04; Pi OS bookworm has 2.36). Needs the package index,
# not root. Prints one line per Python x platform and exits non-zero when any fails.
#   deploy/check-wheels.sh            (make check-wheels)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
PYTHONS=${PYTHONS:-"3.10 3.11 3.12 3.13"}
ARCHES=${ARCHES:-"aarch64 x86_64"}
# shellcheck source=deploy/arm64/root.sh
source "$REPO/deploy/arm64/root.sh"  # pip_env: the host's pip settings less local x86 wheel folders

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" "$REPO" >/dev/null
wheel=$(ls "$work"/dist/edge_affectsr-*.whl)

platforms() {  # pip matches --platform tags literally: list every manylinux level up to glibc 2.35
    local g
    for g in $(seq 17 35); do printf -- '--platform manylinux_2_%s_%s ' "$g" "$1"; done
    [ "$1" != x86_64 ] || printf -- '--platform manylinux2014_x86_64'
}

# The constraints as pip on Python $1 reads them: pip evaluates python_version markers for the Python
# it runs on, not for --python-version, so the markers are resolved here for the target.
constraints_for() {
    "$PYTHON" - "$1" "$REPO/requirements/constraints.txt" <<'EOF'
import sys
from packaging.requirements import Requirement
env = {"python_version": sys.argv[1], "python_full_version": sys.argv[1] + ".0"}
for line in open(sys.argv[2]):
    line = line.split("#")[0].strip()
    if line and (not (req := Requirement(line)).marker or req.marker.evaluate(env)):
        print(line.split(";")[0].strip())
EOF
}

# One resolution: "ok ..." or "FAILED ..." on stdout (they run in parallel: the index is the slow part).
resolve() {
    local arch=$1 py=$2 out picked env_args
    constraints_for "$py" >"$work/constraints-$arch-$py.txt"
    mapfile -t env_args < <(pip_env)
    # shellcheck disable=SC2046
    if out=$(env -i PATH="$PATH" HOME="$HOME" PIP_CONFIG_FILE=/dev/null "${env_args[@]}" \
             "$PYTHON" -m pip install --dry-run --ignore-installed --only-binary=:all: --target "$work/t-$arch-$py" \
             --python-version "$py" $(platforms "$arch") -c "$work/constraints-$arch-$py.txt" \
             --report "$work/report-$arch-$py.json" -q "$wheel[device]" 2>&1); then
        picked=$("$PYTHON" -c 'import json,sys; r=json.load(open(sys.argv[1]))["install"]
m = [i["metadata"] for i in r]
print(" ".join(sorted(d["name"] + "==" + d["version"] for d in m if d["name"] in ("numpy", "pillow", "ai-edge-litert"))))' \
            "$work/report-$arch-$py.json")
        echo "ok      python $py $arch: $picked"
    else
        echo "FAILED  python $py $arch: $(grep -m1 ERROR <<<"$out" || tail -1 <<<"$out")"
    fi
}

for arch in $ARCHES; do
    for py in $PYTHONS; do
        resolve "$arch" "$py" >"$work/result-$arch-$py" &
    done
done
wait
for arch in $ARCHES; do
    for py in $PYTHONS; do
        cat "$work/result-$arch-$py"
    done
done
! grep -q '^FAILED' "$work"/result-*
