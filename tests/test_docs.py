"""The documentation holds together: links resolve, code cites docs/design.md by existing sections.

- every relative link in README.md and docs/*.md points to an existing file, and a ``#fragment``
  to a heading of that file (GitHub's anchor rules);
- no file under src/, tests/ or benchmarks/ cites the design notes that are not in the repository:
  the method is documented in docs/design.md;
- every ``docs/design.md §N`` citation names a section that exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CODE_DIRS = ("src", "tests", "benchmarks")
CODE_SUFFIXES = {".py", ".md", ".txt", ".toml", ".cfg", ".sh"}

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SECTION = re.compile(r"^#{2,6}\s+(\d+(?:\.\d+)*)\.?\s")
_CITATION = re.compile(r"docs/design\.md\s+§(\d+(?:\.\d+)*)")
# Built from parts so that this file does not match its own check.
_STALE = "DESIGN" + ".md"


def _prose_lines(path: Path) -> list[str]:
    """Lines outside fenced code blocks."""
    out, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return out


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: rendered text, lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts by its text
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for line in _prose_lines(path):
        m = _HEADING.match(line)
        if not m:
            continue
        slug = _slug(m.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _links(path: Path) -> list[str]:
    links = []
    for line in _prose_lines(path):
        links += _LINK.findall(re.sub(r"`[^`]*`", "", line))  # not inside inline code
    return links


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for link in _links(doc):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link):  # http:, https:, mailto:
            continue
        target, _, fragment = link.partition("#")
        path = doc if not target else (doc.parent / target).resolve()
        if not path.exists():
            broken.append(f"{link} (no such file)")
        elif fragment and path.suffix == ".md" and fragment not in _anchors(path):
            broken.append(f"{link} (no heading #{fragment} in {path.name})")
    assert not broken, f"{doc.relative_to(ROOT)}: broken links: {broken}"


def _code_files() -> list[Path]:
    files = []
    for d in CODE_DIRS:
        files += [p for p in (ROOT / d).rglob("*") if p.is_file() and p.suffix in CODE_SUFFIXES]
    return sorted(files)


def test_code_cites_docs_design_only() -> None:
    stale = []
    for path in _code_files():
        for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if _STALE in line:
                stale.append(f"{path.relative_to(ROOT)}:{i}")
    assert not stale, f"cite docs/design.md instead of {_STALE}: {stale}"


def test_design_citations_name_existing_sections() -> None:
    sections = set()
    for line in _prose_lines(ROOT / "docs" / "design.md"):
        m = _SECTION.match(line)
        if m:
            sections.add(m.group(1))
    assert {"1", "2.2", "7.4", "8.4"} <= sections  # the numbering the code relies on
    missing = []
    for path in [*_code_files(), *DOCS]:
        text = path.read_text(encoding="utf-8", errors="replace")
        missing += [f"{path.relative_to(ROOT)}: §{n}" for n in _CITATION.findall(text) if n not in sections]
    assert not missing, f"citations of sections that docs/design.md does not have: {missing}"


def test_architecture_names_existing_files() -> None:
    """Every ``*.py`` path docs/architecture.md names is a file of the package or the repository."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    names = set(re.findall(r"(?<![\w./])((?:[\w]+/)*[\w]+\.py)\b", text))
    assert len(names) > 30
    missing = [n for n in sorted(names)
               if not (ROOT / "src" / "swifthydra" / n).is_file() and not (ROOT / n).is_file()]
    assert not missing, missing
