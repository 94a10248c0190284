"""The wheel installs one namespace, ``edge_affectsr``: the stage folders at the top of the repo
(``distill/``, ``convert/``, ``device/``) become ``edge_affectsr.distill`` and so on, and no generic
top-level ``device`` / ``convert`` / ``distill`` package lands in site-packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGES = {"distill": "edge_affectsr/distill", "convert": "edge_affectsr/convert", "device": "edge_affectsr/device"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    shutil.rmtree(ROOT / "build", ignore_errors=True)  # setuptools packs whatever a previous build left there
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return next(out.glob("edge_affectsr-*.whl"))


def package_folders() -> set[str]:
    """Every package in the repo, as the path it must have inside the wheel."""
    found = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "edge_affectsr").rglob("__init__.py")}
    for folder, installed in STAGES.items():
        found |= {str(Path(installed, p.parent.relative_to(ROOT / folder))) for p in (ROOT / folder).rglob("__init__.py")}
    return found


@pytest.mark.slow
def test_wheel_installs_only_the_edge_affectsr_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"edge_affectsr"}
    packages = {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")}
    assert package_folders() <= packages, sorted(package_folders() - packages)
    assert "edge_affectsr/models/bundle-x4/manifest.json" in names  # package data travels too
    assert "edge_affectsr/data/astronaut_face.jpg" in names  # the built-in face (eval, the device's clip)
    assert {f"edge_affectsr/device/reporting/web/{n}" for n in ("index.html", "app.js", "style.css")} <= set(names)  # the live view
    assert {"edge_affectsr/models/bundle-x4/manifest.sig", "edge_affectsr/keys/edge-affectsr-project.pub"} <= set(names)


@pytest.mark.slow
def test_installed_wheel_imports_stages_under_the_namespace_only(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    code = ("import edge_affectsr.device as d, edge_affectsr.convert as c, edge_affectsr.distill as s\n"
            f"assert all(m.__file__.startswith({str(target)!r}) for m in (d, c, s)), (d.__file__, c.__file__, s.__file__)\n"
            "import importlib.util\n"
            "print([importlib.util.find_spec(n) is None for n in ('device', 'convert', 'distill')])")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[True, True, True]"


def test_a_stage_folder_imported_by_its_bare_name_says_where_it_belongs():
    done = subprocess.run([sys.executable, "-c", "import device"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "edge_affectsr.device" in done.stderr.splitlines()[-1]


def test_every_installed_opencv_is_the_pinned_one_and_cv2_imports():
    """The workstation venv holds up to three OpenCV distributions sharing one ``cv2`` folder (ours is
    headless; mediapipe adds contrib, onnx2tf the full one): whichever was installed last provides
    ``cv2``, which is only safe while all are the one pinned version (deploy/INSTALL.md)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = dict(line.split("==", 1) for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines()
                if line.startswith("opencv"))
    installed = {}
    for name in pins:
        try:
            installed[name] = version(name)
        except PackageNotFoundError:
            continue
    assert "opencv-python-headless" in installed, installed  # what [device] and [distill] ask for
    assert all(installed[name] == pins[name] for name in installed), (installed, pins)
    done = subprocess.run([sys.executable, "-c", "import cv2; print(cv2.__version__)"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and pins["opencv-python-headless"].startswith(done.stdout.strip()), done.stderr[-2000:]
