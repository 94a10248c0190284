"""edge_affectsr/reports.py: result files appear whole or not at all."""

from __future__ import annotations

import json

from edge_affectsr.reports import write_json, write_text


def test_write_creates_folders_replaces_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "a" / "b" / "table.md"
    write_text(target, "old\n")
    write_text(target, "| new |\n")
    assert target.read_text() == "| new |\n"
    write_json(tmp_path / "a" / "r.json", {"psnr": 27.3, "rows": [1, 2]})
    assert json.loads((tmp_path / "a" / "r.json").read_text()) == {"psnr": 27.3, "rows": [1, 2]}
    assert sorted(p.name for p in (tmp_path / "a").rglob("*")) == ["b", "r.json", "table.md"]
