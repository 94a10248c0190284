"""`edge-affectsr camera-eval`: face photos through the device pipeline, scored against HR: ten variants of
the built-in face everywhere (sizes, mirrored, lighter and darker), and CelebA photos where the
shared data is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from device_bundle import require_bundle
from PIL import Image, ImageEnhance, ImageOps

from edge_affectsr.builtin_face import builtin_face
from edge_affectsr.device.service.camera_eval import OUTPUTS, camera_eval, markdown, write_report
from edge_affectsr.runtime.frames import paste
from edge_affectsr.errors import UserError


def builtin_photos(folder: Path, n: int = 10) -> Path:
    """``n`` photos of the built-in face: sizes from 160 to 250 px, every other one mirrored, lighter and darker."""
    face = Image.fromarray(builtin_face())
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        side = 160 + 10 * i
        photo = face.resize((side, side), Image.Resampling.BICUBIC)
        photo = ImageOps.mirror(photo) if i % 2 else photo
        ImageEnhance.Brightness(photo).enhance(0.85 + 0.03 * i).save(folder / f"face{i:02d}.jpg", quality=95)
    return folder


@pytest.fixture(scope="module", params=["builtin", "celeba"])
def report(request, tmp_path_factory) -> dict:
    if request.param == "celeba":
        return camera_eval(require_bundle(), request.getfixturevalue("shared_data") / "celeba" / "val", faces=10, stride=60)
    return camera_eval(require_bundle(), builtin_photos(tmp_path_factory.mktemp("photos")), faces=10, stride=1)


def test_every_output_is_scored_on_the_faces_the_pipeline_found(report):
    assert report["photos"] == 10 and report["faces"] + report["missed"] == 10 and report["faces"] >= 8
    rows = {r["output"]: r for r in report["rows"]}
    assert list(rows) == list(OUTPUTS)
    assert rows["the HR crop itself"]["psnr_vs_hr"] is None and rows["the HR crop itself"]["agreement_with_hr"] == 1.0
    assert rows["bicubic"]["guard_agreement"] == 1.0 and rows["bicubic"]["kl_median"] == 0.0


def test_guard_separates_kept_from_destroyed_expressions(report):
    rows = {r["output"]: r for r in report["rows"]}
    assert rows["bicubic + unsharp mask"]["guard_pass"] >= 0.6
    assert rows["bicubic blurred, sigma 6"]["guard_pass"] == 0.0
    assert rows["the face upside down"]["guard_pass"] <= 0.2
    assert rows["bicubic blurred, sigma 6"]["psnr_vs_hr"] < rows["bicubic"]["psnr_vs_hr"]


def test_report_files(report, tmp_path):
    write_report(report, tmp_path / "r.json", tmp_path / "r.md")
    table = (tmp_path / "r.md").read_text()
    scores, verdicts = [block for block in table.split("\n\n") if block.startswith("|")][:2]
    assert table.startswith("| output |") and len(scores.splitlines()) == len(verdicts.splitlines()) == len(OUTPUTS) + 2
    assert "kept / changed / not verified" in verdicts.splitlines()[0]
    assert "All checks, by reference" not in table  # the shipped bundle has no calibrated reference to compare
    assert markdown(report) in table


def test_without_a_guard_reference_both_references_are_bicubic_and_the_pass_rates_split_by_rightness(report):
    """The shipped bundle has no guard_reference: every check against the bundle's reference is every
    check against bicubic; under all checks every output is verified and the pass rate is the mix of
    the rates among outputs read as the HR crop and the others, weighted by agreement."""
    for r in report["rows"]:
        assert r["guard_calibrated_reference"] == 0.0
        for key in ("guard_pass", "guard_pass_if_right", "guard_pass_if_wrong"):
            assert r[f"{key}_all_checks"] == r[f"{key}_bicubic_reference"]
        a, right, wrong = r["agreement_with_hr"], r["guard_pass_if_right_all_checks"], r["guard_pass_if_wrong_all_checks"]
        mixed = (a * right if a else 0.0) + ((1 - a) * wrong if a < 1 else 0.0)
        assert r["guard_unverified_all_checks"] == 0.0 and mixed == pytest.approx(r["guard_pass_all_checks"])


def test_the_device_guards_verdicts_split_every_output_and_only_camera_routed_ones_go_unverified(report):
    for r in report["rows"]:
        assert r["guard_pass"] + r["guard_changed"] + r["guard_unverified"] == pytest.approx(1.0)
        assert r["guard_unverified"] <= r["camera_routed"]
        verified = 1.0 - r["guard_unverified"]
        if verified:
            assert r["guard_pass_verified"] == pytest.approx(r["guard_pass"] / verified)
        if not r["camera_routed"]:  # no face routed to the camera model: the device's guard is today's
            assert [r[k] for k in ("guard_pass", "guard_pass_if_right", "guard_pass_if_wrong")] == \
                [r[f"{k}_all_checks"] for k in ("guard_pass", "guard_pass_if_right", "guard_pass_if_wrong")]


def test_too_few_photos_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="at least 2 face photos"):
        camera_eval(require_bundle(), tmp_path)


def test_large_photos_are_shrunk_into_the_frame():
    photo = np.full((1000, 800, 3), 200, np.uint8)
    frame = paste(photo)
    assert frame.shape == (480, 640, 3)
    assert (frame == 200).all(axis=2).sum() == pytest.approx(380 * 304, rel=0.01)  # 1000x800 scaled by 0.38


def test_photos_in_class_sub_folders_are_found(tmp_path):
    """A class-per-folder set (like ../shared/data/expressions) is read through its sub-folders."""
    src = sorted(builtin_photos(tmp_path / "photos", 4).glob("*.jpg"))
    for i, p in enumerate(src):
        (tmp_path / f"class{i % 2}").mkdir(exist_ok=True)
        (tmp_path / f"class{i % 2}" / p.name).write_bytes(p.read_bytes())
    (tmp_path / "notes.txt").write_text("not a photo")
    got = camera_eval(require_bundle(), tmp_path, faces=4, stride=1)
    assert got["photos"] == 4 and got["faces"] + got["missed"] == 4 and got["faces"] >= 2
