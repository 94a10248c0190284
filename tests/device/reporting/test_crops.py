"""device/reporting/crops.py: off by default, PNGs under a byte quota (oldest first), a full disk turns it off."""

from __future__ import annotations

import logging
import os
import shutil

import cv2
import numpy as np
import pytest

from _device_events import make_event
from _tmpfs import small_tmpfs
from edge_affectsr.config import ConfigError, validate
from edge_affectsr.device.reporting.crops import CropSaver, CropsConfig, CropsError


def noise(seed: int, side: int = 128) -> np.ndarray:
    """Incompressible BGR: each PNG is ~49 kB, so quotas are easy to reason about."""
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def pngs(folder) -> list[str]:
    return sorted(p.name for p in folder.glob("*.png"))


def test_off_by_default(tmp_path):
    saver = CropSaver(CropsConfig(folder=tmp_path / "crops"))
    assert saver.save(make_event(0), noise(0)) is None
    assert not (tmp_path / "crops").exists()  # nothing is even created


def test_saves_lossless_pngs_named_by_time_frame_and_track(tmp_path):
    saver = CropSaver(CropsConfig(enabled=True, folder=tmp_path / "crops"))
    image = noise(1)
    path = saver.save(make_event(12, track_id=3, time="2025-06-01T12:00:00.250Z"), image)
    assert path.name == "20250601T120000.250Z_f0000012_t00003.png"
    assert np.array_equal(cv2.imread(str(path)), image)
    again = saver.save(make_event(12, track_id=3, time="2025-06-01T12:00:00.250Z"), noise(2))  # same name
    assert again.name.endswith("_1.png") and np.array_equal(cv2.imread(str(path)), image)  # not overwritten
    assert saver.saved == 2 and saver.used_bytes == path.stat().st_size + again.stat().st_size


def test_quota_deletes_the_oldest_first(tmp_path):
    folder = tmp_path / "crops"
    saver = CropSaver(CropsConfig(enabled=True, folder=folder, quota_mb=0.12))  # room for two noise crops
    paths = [saver.save(make_event(i, time=f"2025-06-01T12:00:0{i}.000Z"), noise(i)) for i in range(5)]
    assert pngs(folder) == sorted(p.name for p in paths[-2:])
    assert saver.deleted == 3 and saver.used_bytes <= 0.12e6
    assert sum(p.stat().st_size for p in folder.glob("*.png")) == saver.used_bytes


def test_a_restart_adopts_the_folder_and_clears_crash_leftovers(tmp_path):
    folder = tmp_path / "crops"
    first = CropSaver(CropsConfig(enabled=True, folder=folder, quota_mb=1))
    old = [first.save(make_event(i, time=f"2025-06-01T12:00:0{i}.000Z"), noise(i)) for i in range(3)]
    for age, path in enumerate(reversed(old)):  # mtimes: old[0] oldest
        os.utime(path, (1e9 - age * 10, 1e9 - age * 10))
    (folder / "half-written.png.tmp").write_bytes(b"\x89PNG partial")
    second = CropSaver(CropsConfig(enabled=True, folder=folder, quota_mb=0.12))  # quota lowered: applies at once
    assert pngs(folder) == sorted(p.name for p in old[1:]) and second.deleted == 1
    assert not list(folder.glob("*.tmp"))
    new = second.save(make_event(9), noise(9))
    assert pngs(folder) == sorted([old[2].name, new.name])


def test_a_full_disk_turns_saving_off_without_crashing(tmp_path, caplog):
    with small_tmpfs(tmp_path / "small", "64k") as mnt:
        saver = CropSaver(CropsConfig(enabled=True, folder=mnt / "crops", quota_mb=10))  # quota far above the disk
        with caplog.at_level(logging.ERROR, logger="edge_affectsr.device.reporting.crops"):
            results = [saver.save(make_event(i), noise(i)) for i in range(4)]
        assert results[0] is not None and results[1:] == [None, None, None]
        assert saver.disk_full == 1 and saver.enabled is False and saver.saved == 1
        assert len([r for r in caplog.records if "disk full" in r.getMessage()]) == 1
        assert pngs(mnt / "crops") == [results[0].name] and not list((mnt / "crops").glob("*.tmp"))
        assert saver.summary()["disk_full"] == 1


def test_other_write_errors_are_counted_and_turn_saving_off(tmp_path, caplog):
    folder = tmp_path / "crops"
    saver = CropSaver(CropsConfig(enabled=True, folder=folder))
    shutil.rmtree(folder)
    folder.write_text("someone replaced the folder with a file")
    with caplog.at_level(logging.ERROR, logger="edge_affectsr.device.reporting.crops"):
        assert saver.save(make_event(0), noise(0)) is None
        assert saver.save(make_event(1), noise(1)) is None
    assert saver.errors == 1 and not saver.enabled
    assert len(caplog.records) == 1


def test_an_image_that_cannot_be_encoded_is_counted(tmp_path):
    saver = CropSaver(CropsConfig(enabled=True, folder=tmp_path / "crops"))
    assert saver.save(make_event(0), np.zeros((0, 0, 3), np.uint8)) is None
    assert saver.errors == 1 and saver.enabled  # one bad crop does not turn saving off
    assert saver.save(make_event(1), noise(1)) is not None


def test_unusable_folder_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CropsError, match="crops.folder"):
        CropSaver(CropsConfig(enabled=True, folder=blocker / "crops"))


def test_config():
    assert CropsConfig().enabled is False
    with pytest.raises(ConfigError, match="quota_mb"):
        validate({"quota_mb": 0}, CropsConfig)
    with pytest.raises(ConfigError, match="quota: unknown key"):
        validate({"quota": 5}, CropsConfig)
