"""The docs site builds with `mkdocs build --strict` (what `make docs` runs), and strict means something: a broken
link, a missing anchor or a page left out of nav fails the build. The README's links and command table follow the
docs and the Makefile."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

from tests.conftest import ROOT

LINK_RE = re.compile(r"\]\(([^)\s]+)\)")


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's end-of-life banner, not a build warning
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], capture_output=True, text=True, env=env, timeout=300)


def nav_pages() -> list[str]:
    """The pages mkdocs.yml's nav names (read as text: the file is ours and flat)."""
    return re.findall(r"^\s+- [^:\n]+: (\S+\.md)$", (ROOT / "mkdocs.yml").read_text(), re.M)


def test_the_site_builds_strictly_with_every_page(tmp_path):
    done = mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert sorted(nav_pages()) == pages
    for page in pages:
        assert (tmp_path / "site" / page.replace(".md", ".html")).is_file(), page


@pytest.fixture
def docs_copy(tmp_path) -> Path:
    """mkdocs.yml and docs/ copied, to be broken one way; returns the copied mkdocs.yml."""
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    return tmp_path / "mkdocs.yml"


@pytest.mark.parametrize("breakage, named", [
    (lambda docs: docs.joinpath("matrix.md").write_text(docs.joinpath("matrix.md").read_text()
                                                         + "\nSee [nowhere](no-such-page.md).\n"), "no-such-page.md"),
    (lambda docs: docs.joinpath("matrix.md").write_text(docs.joinpath("matrix.md").read_text()
                                                         + "\nSee [a section](locks.md#no-such-section).\n"),
     "no-such-section"),
    (lambda docs: docs.joinpath("stray.md").write_text("# Stray\n\nA page nav does not name.\n"), "stray.md"),
], ids=["broken link", "missing anchor", "page not in nav"])
def test_a_broken_site_fails_the_build(docs_copy, tmp_path, breakage, named):
    breakage(docs_copy.parent / "docs")
    done = mkdocs_build(docs_copy, tmp_path / "site")
    assert done.returncode != 0
    assert named in done.stderr


def headings(path: Path) -> set[str]:
    return {slugify(line.lstrip("#").strip().replace("`", ""), "-")
            for line in path.read_text().splitlines() if line.startswith("#")}


def test_the_readme_links_to_pages_and_sections_that_exist():
    links = [link for link in LINK_RE.findall((ROOT / "README.md").read_text()) if "://" not in link]
    assert links
    for link in links:
        target, _, anchor = link.partition("#")
        path = ROOT / target
        assert path.is_file(), f"README.md links to {link}: no such file"
        if anchor:
            assert anchor in headings(path), f"README.md links to {link}: {target} has no such heading"


def test_the_readme_lists_every_make_target_in_make_help_order():
    makefile = (ROOT / "Makefile").read_text()
    targets = re.findall(r"^([a-z0-9-]+):.*## ", makefile, re.M)  # what `make help` lists
    listed = re.findall(r"^\| `make ([a-z0-9-]+)` \|", (ROOT / "README.md").read_text(), re.M)
    assert listed == targets
