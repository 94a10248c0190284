"""deploy/INSTALL.md tells a Raspberry Pi user the very lines `make check-arm64` runs in its arm64
root (deploy/arm64/pi-install.sh): if either changes alone, the check would prove another install."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def section_code(markdown: str, heading: str) -> list[str]:
    """The lines of the first fenced code block under the ``## heading...`` section."""
    section = re.search(rf"^## {re.escape(heading)}.*?$(.*?)(?=^## |\Z)", markdown, flags=re.M | re.S)
    assert section, f"no section '## {heading}' in INSTALL.md"
    block = re.search(r"^```\w*\n(.*?)^```", section.group(1), flags=re.M | re.S)
    assert block, f"no code block in '## {heading}'"
    return block.group(1).splitlines()


def test_the_arm64_check_runs_the_raspberry_pi_lines_of_install_md():
    doc = section_code((ROOT / "deploy" / "INSTALL.md").read_text(), "Raspberry Pi OS")
    script = [line for line in (ROOT / "deploy" / "arm64" / "pi-install.sh").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert len(script) == 2 and all(line in doc for line in script), (script, doc)
    assert "--system-site-packages" in script[0]
    assert "-c /opt/edge-affectsr/src/requirements/constraints.txt" in script[1]
