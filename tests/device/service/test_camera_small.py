"""`edge-affectsr camera-eval --small PRESET:SIZE`: faces staged small in a whole degraded frame."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pytest
from device_bundle import require_bundle
from PIL import Image

from edge_affectsr.builtin_face import builtin_face
from edge_affectsr.device.service.camera_eval import OUTPUTS, camera_eval, markdown
from edge_affectsr.device.service.camera_small import SmallFaces, aligned_reference, stage
from edge_affectsr.device.service.commands import CameraEval
from edge_affectsr.errors import UserError
from edge_affectsr.protocol import make_hr
from edge_affectsr.runtime.frames import BACKGROUND

PHOTO = Image.fromarray(np.asarray(builtin_face()))


def outside(frame: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
    """The frame's pixels [n, 3] away from the face crop (a crop's side clear of it: no codec bleed)."""
    x0, y0, side = box
    mask = np.ones(frame.shape[:2], bool)
    mask[max(0, y0 - side):y0 + 2 * side, max(0, x0 - side):x0 + 2 * side] = False
    return frame[mask]


def test_a_face_is_staged_at_the_cell_size_and_only_its_crop_differs_without_sensor_or_codec():
    staged = stage(PHOTO, SmallFaces.parse("lens:24"), 0)
    x0, y0, side = staged.box
    assert staged.frame_bgr.shape == (480, 640, 3) and side == 24
    assert (outside(staged.frame_bgr, staged.box) == BACKGROUND).all()  # lens: optics only, on the face
    crop = staged.frame_bgr[y0:y0 + side, x0:x0 + side]
    assert (crop != BACKGROUND).any(axis=2).mean() > 0.9
    # the crop is the HR crop at 24 px (blurred): close to an area resize of it
    expected = cv2.resize(make_hr(PHOTO), (24, 24), interpolation=cv2.INTER_AREA)
    assert np.abs(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(int) - expected).mean() < 12


@pytest.mark.parametrize("cell", ["jpeg:24", "h264:24"])
def test_noise_and_compression_hit_the_whole_frame(cell):
    if cell.startswith("h264"):
        pytest.importorskip("av")
    staged = stage(PHOTO, SmallFaces.parse(cell), 3)
    far = outside(staged.frame_bgr, staged.box)
    assert staged.box[2] == 24
    assert (far != BACKGROUND).any(axis=1).mean() > 0.3  # background pixels changed by noise / the codec
    assert np.abs(far.astype(float) - BACKGROUND).mean() < 6  # ... around the background, not replaced


def test_staging_is_seeded_per_face():
    spec = SmallFaces.parse("jpeg:32")
    a, b, c = stage(PHOTO, spec, 5), stage(PHOTO, spec, 5), stage(PHOTO, spec, 6)
    assert a.box == b.box and np.array_equal(a.frame_bgr, b.frame_bgr)
    assert a.box[:2] != c.box[:2]
    other_seed = stage(PHOTO, SmallFaces.parse("jpeg:32", seed=1), 5)
    assert not np.array_equal(a.frame_bgr, other_seed.frame_bgr)


def test_the_reference_is_the_hr_crop_in_the_aligners_frame():
    staged = stage(PHOTO, SmallFaces.parse("lens:32"), 0)
    x0, y0, side = staged.box
    k = side / 128  # the matrix (frame px -> crop px) that maps the pasted crop exactly onto the 128 px crop
    exact = np.array([[1 / k, 0, -(x0 + 0.5 * k - 0.5) / k], [0, 1 / k, -(y0 + 0.5 * k - 0.5) / k]])
    assert np.array_equal(aligned_reference(staged, exact), staged.hr)
    wider = exact * 0.8  # a looser alignment reaches past the crop: the frame's background shows there
    wider[:, 2] += 12.8
    ref = aligned_reference(staged, wider)
    assert (ref[0, 0] == BACKGROUND[::-1]).all() and (ref[64, 64] != BACKGROUND[::-1]).any()


def test_bad_cells_and_flags_are_clear_errors():
    with pytest.raises(UserError, match="clean"):
        SmallFaces.parse("clean")
    with pytest.raises(UserError, match="unknown degradation"):
        SmallFaces.parse("fog:24")
    with pytest.raises(UserError, match="at least 3 times"):
        SmallFaces.parse("lens:100", frame_size=(240, 320))
    parser = argparse.ArgumentParser()
    cmd = CameraEval()
    cmd.add_arguments(parser)
    base = ["--data", "."]
    assert cmd.small(parser.parse_args(base)) is None
    spec = cmd.small(parser.parse_args([*base, "--small", "h264:24", "--tiles", "6,4", "--frame", "800x600"]))
    assert (spec.cell, spec.tiles, spec.frame_size) == ("h264:24", (6, 4), (600, 800))
    assert cmd.small(parser.parse_args([*base, "--small", "jpeg:24"])).tiles is None  # the device's zoom levels
    with pytest.raises(UserError, match="go with --small"):
        cmd.small(parser.parse_args([*base, "--tiles", "6,4"]))
    with pytest.raises(UserError, match="COLS,ROWS"):
        cmd.small(parser.parse_args([*base, "--small", "jpeg:24", "--tiles", "6x4"]))


@pytest.fixture
def builtin_faces(tmp_path: Path) -> Path:
    """Three copies of the built-in face (each staged with its own seed and place)."""
    for i in range(3):
        PHOTO.save(tmp_path / f"face{i}.png")
    return tmp_path


def test_small_mode_end_to_end_counts_and_scores_the_found_faces(builtin_faces):
    report = camera_eval(require_bundle(), builtin_faces, faces=3, stride=1, small=SmallFaces.parse("lens:48", (6, 4)))
    assert (report["mode"], report["cell"], report["frame"], report["tiles"]) == ("small", "lens:48", "640x480", [6, 4])
    assert report["crop_px"] == [48, 48] and sum(report["outcomes"].values()) == report["photos"] == 3
    assert report["found"] == 3 - report["outcomes"]["not_detected"] >= 2
    assert report["found_at_device_tiles"] >= 2  # the device's own zoom levels, reported beside
    assert report["faces"] == report["outcomes"]["scored"] and report["missed"] == 3 - report["faces"]
    if report["faces"] >= 2:
        rows = {r["output"]: r for r in report["rows"]}
        assert list(rows) == list(OUTPUTS) and rows["the HR crop itself"]["psnr_vs_hr"] is None
        assert 15 < rows["bicubic"]["psnr_vs_hr"] < 35  # against the clean crop, registered
    table = markdown(report)
    assert table.startswith("Small faces, cell lens:48") and "Found " in table


def test_faces_facemesh_rejects_are_scored_from_keypoints_and_counted_per_path(builtin_faces):
    """The built-in face at 24 px under JPEG: FaceMesh rejects it; the default fallback scores it from the
    detector's keypoints, ``--fallback skip`` drops it as before."""
    spec = SmallFaces.parse("jpeg:24", (8, 6))
    report = camera_eval(require_bundle(), builtin_faces, faces=3, stride=1, small=spec)
    paths, outcomes = report["paths"], report["outcomes"]
    assert report["landmark_fallback"] == "keypoints" and outcomes["no_landmarks"] == 0
    assert sum(paths.values()) == outcomes["scored"] == report["faces"] and paths["keypoints"] >= 2
    entry = report["by_path"]["keypoints"]
    assert entry["faces"] == paths["keypoints"] and [r["output"] for r in entry["rows"]] == ["int8 SR (bundle)", "bicubic"]
    assert all(r["landmark_error_median"] is None and r["no_face_in_output"] is None for r in entry["rows"])
    for r in entry["rows"]:  # no landmark check: a camera-routed face is not verified, any other is judged
        assert r["guard_unverified"] == r["camera_routed"] and r["guard_unverified_all_checks"] == 0.0
    table = markdown(report)
    assert f"detector keypoints {paths['keypoints']}" in table and "| keypoints |" in table
    skipped = camera_eval(require_bundle(), builtin_faces, faces=3, stride=1, small=spec, fallback="skip")
    assert skipped["paths"]["keypoints"] == 0 and skipped["outcomes"]["no_landmarks"] >= paths["keypoints"]
    parser = argparse.ArgumentParser()
    CameraEval().add_arguments(parser)
    assert parser.parse_args(["--data", "."]).fallback == "keypoints"
    assert parser.parse_args(["--data", ".", "--fallback", "skip"]).fallback == "skip"


def test_faces_nobody_finds_are_a_finding_not_an_error(builtin_faces):
    """16 px face crops (faces ~8 px wide) on a 3x2 grid: the detector sees none; the report says so."""
    report = camera_eval(require_bundle(), builtin_faces, faces=3, stride=1, small=SmallFaces.parse("lens:16", (3, 2)))
    assert report["outcomes"]["not_detected"] == 3 and report["found"] == 0 and report["rows"] == []
    assert report["found_at_device_tiles"] == 0  # nor do the device's zoom levels (made for faces from 16 px)
    assert "Found 0 of 3" in markdown(report) and "nothing to compare" in markdown(report)


@pytest.mark.data
def test_small_mode_on_celeba_faces_scores_against_the_clean_crop(shared_data: Path):
    report = camera_eval(require_bundle(), shared_data / "celeba" / "val", faces=8, stride=70,
                         small=SmallFaces.parse("lens:32", (8, 6)))
    assert report["found"] >= 6 and report["faces"] >= 2
    rows = {r["output"]: r for r in report["rows"]}
    sr, bicubic = rows["int8 SR (bundle)"], rows["bicubic"]
    assert 18 < bicubic["psnr_vs_hr"] < 30 and sr["psnr_vs_hr"] > bicubic["psnr_vs_hr"] - 0.5
    assert rows["bicubic blurred, sigma 6"]["psnr_vs_hr"] < bicubic["psnr_vs_hr"]
