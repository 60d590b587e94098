"""The README tells the truth about the tree: its layout names every module, and its fast tier is a command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_layout_names_every_module() -> None:
    text = (ROOT / "README.md").read_text()
    layout = text.split("## Layout")[1].split("\n## ")[0]
    named = set(re.findall(r"`([\w/]+\.py)`", layout)) | set(re.findall(r"\b(\w+\.py)\b", layout))
    folders = re.findall(r"\*\*\w+\*\* `([\w/]+)/`|`(\w+)/` \(", layout)
    assert folders, "the layout names its folders"
    missing = []
    for package in ("spec_ray", "analysis", "sweeps", "benchmarks"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel not in named and path.name not in named:
                missing.append(rel)
    assert not missing, f"modules the README layout does not name: {missing}"


def test_the_fast_tier_is_a_command_in_the_readme() -> None:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- fast-test-command -->")[1].split("```bash\n")[1].split("```")[0]
    assert 'pytest -q -m "not slow"' in block
