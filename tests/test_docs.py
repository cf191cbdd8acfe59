"""The Markdown the project ships: every relative link names a file that exists and every #anchor a heading."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "inpaint" / "assets").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def prose(path: Path) -> str:
    """A Markdown file without its fenced code blocks (a ``# comment`` there is no heading, a ``](x)`` no link)."""
    return re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces to hyphens; a
    repeated heading gets ``-1``, ``-2``, ..."""
    anchors: list[str] = []
    for heading in re.findall(r"^#+\s+(.+?)\s*$", prose(path), re.M):
        anchor = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        repeats = sum(a == anchor or a.startswith(anchor + "-") and a[len(anchor) + 1:].isdigit() for a in anchors)
        anchors.append(f"{anchor}-{repeats}" if repeats else anchor)
    return set(anchors)


def test_anchors_are_githubs(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n## The `slice_resnet` model (issue 11): 6.14 + 1.58 CPU-hours\n"
                                   "```bash\n# not a heading\n```\n## Title\n")
    assert heading_anchors(tmp_path / "a.md") == {"title", "the-slice_resnet-model-issue-11-614--158-cpu-hours",
                                                  "title-1"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(doc):
    broken = []
    for target in LINK.findall(prose(doc)):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in heading_anchors(path):
            broken.append(target)
    assert not broken, f"{doc.relative_to(REPO)}: links to nothing: {broken}"
