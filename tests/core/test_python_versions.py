"""The camera side runs on Python 3.10-3.13 (a Jetson's JetPack 6 has 3.10, Pi OS bookworm 3.11).

No 3.10 interpreter can be installed on this machine, so the proof is static: the package metadata
admits 3.10, and ``vermin`` finds no construct newer than 3.10 in any module the daemon can import
(the device stage, the runtime layer and every core module they reach, found by following their
imports). The one 3.11-only module in that set, ``tomllib``, has a fallback that is exercised here
for real with ``tomllib`` hidden. deploy/check-wheels.sh shows the dependencies resolve on each Python.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
STAGE_DIRS = {"edge_affectsr.distill": "distill", "edge_affectsr.convert": "convert", "edge_affectsr.device": "device"}
DEVICE_ROOTS = ("edge_affectsr.device", "edge_affectsr.runtime")
# 3.11-only names the device path may use, each with its 3.10 fallback (checked below)
VERMIN_EXCLUDES = ("tomllib",)
VERMIN = [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())",
          "-t=3.10-", "--violations", "--no-tips", "--eval-annotations"]


def module_file(name: str) -> Path | None:
    """The source file of one of our modules (stage packages live at the repo top), else None."""
    for prefix, folder in STAGE_DIRS.items():
        if name == prefix or name.startswith(prefix + "."):
            base = ROOT / folder / Path(*name.split(".")[2:])
            break
    else:
        if name != "edge_affectsr" and not name.startswith("edge_affectsr."):
            return None
        base = ROOT / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_names(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports, at the top or inside functions (lazy imports run
    on the device too); ``from a import b`` yields ``a`` and ``a.b`` (b may be a module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def device_closure() -> set[Path]:
    """The source files of every module of ours the daemon can import."""
    todo = [p for name in DEVICE_ROOTS for p in module_file(name).parent.rglob("*.py")]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_names(path):
            parts = name.split(".")
            todo += [f for f in (module_file(".".join(parts[:i])) for i in range(1, len(parts) + 1)) if f]
    return seen


def run_vermin(*paths: Path, excludes: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    args = [a for name in excludes for a in ("--exclude", name)]
    return subprocess.run(VERMIN + args + [str(p) for p in paths], capture_output=True, text=True, timeout=300)


def test_metadata_admits_python_3_10_to_3_13():
    spec = SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert all(v in spec for v in ("3.10.0", "3.11.2", "3.12.0", "3.13.0")), spec


def test_dependencies_are_ranges_and_opencv_is_headless():
    """Exact pins live in requirements/constraints.txt only; the full opencv-python links libGL and
    glib, which a Pi OS Lite image lacks, so no extra asks for it."""
    deps = {"dependencies": PYPROJECT["project"]["dependencies"], **PYPROJECT["project"]["optional-dependencies"]}
    for group, reqs in deps.items():
        for req in map(Requirement, reqs):
            assert not any(s.operator in ("==", "===") for s in req.specifier), f"{group}: {req} is an exact pin"
            assert req.name != "opencv-python", f"{group}: use opencv-python-headless"
    assert any(Requirement(r).name == "opencv-python-headless" for r in deps["device"])


def test_the_closure_is_the_device_path():
    """The import walk finds the core modules the daemon uses and no workstation stage."""
    rel = {str(p.relative_to(ROOT)) for p in device_closure()}
    assert {"device/service/daemon.py", "edge_affectsr/runtime/interpreter.py", "edge_affectsr/config.py",
            "edge_affectsr/bundle.py"} <= rel
    assert not any(r.startswith(("distill/", "convert/")) for r in rel), sorted(rel)


@pytest.mark.slow
def test_device_modules_need_nothing_newer_than_python_3_10():
    done = run_vermin(*sorted(device_closure()), excludes=VERMIN_EXCLUDES)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    found = re.search(r"Minimum required versions: (\d+)\.(\d+)", done.stdout)
    assert found and (int(found[1]), int(found[2])) <= (3, 10), done.stdout[-2000:]


def test_vermin_catches_the_3_11_only_stdlib(tmp_path):
    """The check above can fail: each of these is reported as needing 3.11."""
    snippets = {
        "tomllib": "import tomllib\n",
        "typing.Self": "from typing import Self\n",
        "datetime.UTC": "import datetime\nprint(datetime.UTC)\n",
        "enum.StrEnum": "import enum\nclass E(enum.StrEnum):\n    A = 'a'\n",
        "ExceptionGroup": "raise ExceptionGroup('x', [ValueError()])\n",
        "except*": "try:\n    pass\nexcept* ValueError:\n    pass\n",
    }
    for name, code in snippets.items():
        path = tmp_path / f"{name.replace('.', '_').replace('*', 'star')}.py"
        path.write_text(code)
        done = run_vermin(path)
        assert done.returncode != 0 and "3.11" in done.stdout, (name, done.stdout)


def test_toml_configs_load_without_tomllib(tmp_path):
    """Python 3.10 has no tomllib: the config reader falls back to tomli (a dependency there)."""
    assert any(Requirement(r).name == "tomli" and Requirement(r).marker
               and not Requirement(r).marker.evaluate({"python_version": "3.11"})
               and Requirement(r).marker.evaluate({"python_version": "3.10"})
               for r in PYPROJECT["project"]["dependencies"])
    (tmp_path / "device.toml").write_text('[interpreter]\nthreads = 3\n')
    code = textwrap.dedent(f"""
        import sys
        class NoTomllib:
            def find_spec(self, name, path=None, target=None):
                if name == "tomllib":
                    raise ModuleNotFoundError("No module named 'tomllib'")
        sys.meta_path.insert(0, NoTomllib())
        from edge_affectsr.config import read_mapping
        import edge_affectsr.config as c
        print(c.tomllib.__name__, read_mapping({str(tmp_path / 'device.toml')!r}))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "tomli {'interpreter': {'threads': 3}}"
