"""The manual stays whole: a short README, and docs/ that builds with no warning.

README.md is the front page (what it is, the two commands, each user's first command, the
picture, headline results) and points into docs/; everything else lives in docs/, one page per
topic, built by MkDocs (mkdocs.yml). A strict build fails on a link to a page or an anchor that
does not exist and on a page left out of the nav, so these tests run it, and also check what
the build does not see: the README's own links and the mirror of them on docs/index.md.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_MAX_LINES = 200
LINK = re.compile(r"\]\(([^)\s]+)\)")


def nav_pages(node) -> list[str]:
    """Every page file named in mkdocs.yml's nav, depth first."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [page for item in node for page in nav_pages(item)]
    if isinstance(node, dict):
        return [page for value in node.values() for page in nav_pages(value)]
    return []


def config() -> dict:
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text())


def slugs(page: Path) -> set[str]:
    """The anchors MkDocs gives a page's headings (the toc extension's own slugify)."""
    from markdown.extensions.toc import slugify

    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    headings = re.findall(r"^#{1,6} (.+?)\s*$", text, re.M)
    return {slugify(re.sub(r"[`*]", "", h), "-") for h in headings}


def test_mkdocs_builds_strict_without_a_warning(tmp_path):
    site = tmp_path / "site"
    command = ["build", "--strict", "--clean", "--config-file", str(ROOT / "mkdocs.yml")]
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", *command, "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr
    if "No module named mkdocs" in output:
        pytest.fail("mkdocs is not installed: it is in the dev extra, run `make setup`")
    assert result.returncode == 0, output
    warnings = [line for line in output.splitlines() if "WARNING" in line or "ERROR" in line]
    assert not warnings, "\n".join(warnings)
    built = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    for page in DOCS.glob("*.md"):
        html = "index.html" if page.stem == "index" else f"{page.stem}/index.html"
        assert html in built, f"{page.name} was not built"


def test_the_build_is_strict_and_checks_links_between_pages():
    cfg = config()
    assert cfg["strict"] is True
    assert cfg["docs_dir"] == "docs"
    links = cfg["validation"]["links"]
    assert links["not_found"] == "warn" and links["anchors"] == "warn", links
    assert cfg["validation"]["nav"]["omitted_files"] == "warn"


def test_every_docs_page_is_in_the_nav_once():
    pages = nav_pages(config()["nav"])
    on_disk = sorted(p.name for p in DOCS.glob("*.md"))
    assert sorted(set(pages)) == on_disk, "mkdocs.yml's nav and docs/*.md differ"
    repeated = sorted({p for p in pages if pages.count(p) > 1})
    assert not repeated, f"pages in the nav more than once: {repeated}"
    assert not list(DOCS.glob("*/**/*.md")), "docs/ is flat: one page per topic"


def test_readme_is_a_front_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move the detail into "
        "docs/ and link to it"
    )
    text = "\n".join(lines)
    for command in ("make demo", "make test", "asc-edge stream", "asc-server serve"):
        assert command in text, command
    assert "docker compose up" in text and "asc-codec" in text and "asc-train experiment" in text


def readme_links() -> list[str]:
    return [t for t in LINK.findall(README.read_text()) if not re.match(r"[a-z]+:", t)]


def test_readme_links_resolve():
    assert readme_links(), "the README links into docs/"
    for target in readme_links():
        path, _, anchor = target.partition("#")
        file = (ROOT / path) if path else README
        assert file.exists(), f"README links to {target}: no such file"
        if anchor and file.suffix == ".md" and file.parent == DOCS:
            assert anchor in slugs(file), f"README links to {target}: no such heading"


def test_every_page_is_linked_from_the_readme_and_the_index():
    from_readme = {t.partition("#")[0].removeprefix("docs/") for t in readme_links()}
    index = (DOCS / "index.md").read_text()
    from_index = {t.partition("#")[0] for t in LINK.findall(index) if not re.match(r"[a-z]+:", t)}
    pages = {p.name for p in DOCS.glob("*.md")} - {"index.md"}
    assert pages <= from_readme, f"pages the README does not link: {sorted(pages - from_readme)}"
    assert pages <= from_index, f"pages docs/index.md does not link: {sorted(pages - from_index)}"
