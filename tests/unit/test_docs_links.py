"""The README and docs/ stand alone: every link that is not a web address points at a file
in this repository, none leads out of it (a clone has nothing beside it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def local_links(page: Path) -> list[str]:
    links = [m.group(1).split("#")[0] for m in LINK.finditer(page.read_text())]
    return [link for link in links if link and not re.match(r"[a-z]+:", link)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_each_link_resolves_inside_the_repository(page: Path) -> None:
    for link in local_links(page):
        target = (page.parent / link).resolve()
        assert target.is_relative_to(ROOT), f"{link} leads out of the repository"
        assert target.exists(), f"{link} does not exist"


def test_the_readme_links_the_design_doc() -> None:
    assert "docs/design.md" in local_links(ROOT / "README.md")
