"""Every Markdown file of the repository: its relative links (Markdown and HTML, with #anchors) resolve, and no
machine path (/work/, /tmp/, /root/, /home/) appears; the code cites the design document that is in the
repository; the findings page stays short and points into the notebook."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|tmp|root|home)/")
MD_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.I)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def markdown_files() -> List[Path]:
    """Tracked and new (not ignored) Markdown files of the checkout."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    return sorted(ROOT / f for f in dict.fromkeys(out) if (ROOT / f).is_file())


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set:
    seen: dict = {}
    out = set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            out.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return out


def links(path: Path) -> Iterator[Tuple[int, str]]:
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), path.read_text())
    for rx in (MD_LINK, HTML_LINK):
        for m in rx.finditer(text):
            yield text.count("\n", 0, m.start()) + 1, m.group(1)


def broken(path: Path) -> List[str]:
    bad = []
    for line, target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):      # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            bad.append(f"{path.relative_to(ROOT)}:{line}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{path.relative_to(ROOT)}:{line}: {target} (no heading with that anchor)")
    return bad


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_markdown_links_resolve_and_no_machine_paths(path):
    assert not broken(path), "\n".join(broken(path))
    hits = [f"{path.relative_to(ROOT)}:{i}: {line.strip()[:100]}" for i, line in
            enumerate(path.read_text().splitlines(), 1) if MACHINE_PATH.search(line)]
    assert not hits, "machine paths (write them relative to the repository or as placeholders):\n" + "\n".join(hits)


def test_the_checker_finds_what_it_should(tmp_path):
    (tmp_path / "a.md").write_text("# Top: one (two)\n[ok](#top-one-two) [bad](#nope) ![img](missing.png)\n"
                                   '<img src="gone.png"> [web](https://example.org) `/work/x`\n'
                                   "```\n[in code](nowhere.md)\n```\n")
    global ROOT
    old, ROOT = ROOT, tmp_path
    try:
        assert [b.split(": ", 1)[1] for b in broken(tmp_path / "a.md")] == [
            "#nope (no heading with that anchor)", "missing.png (no such file)", "gone.png (no such file)"]
    finally:
        ROOT = old
    assert MACHINE_PATH.search("`/work/x`") and not MACHINE_PATH.search("docs/x and ~/work/y")


def test_the_code_cites_the_design_document_in_the_repository():
    assert (ROOT / "docs" / "design.md").is_file()
    stale = [f"{p.relative_to(ROOT)}" for p in ROOT.glob("[a-z]*/**/*.py") if ".venv" not in p.parts
             and p != Path(__file__).resolve() and re.search(r"\bDESIGN(\.md)?\b", p.read_text())]
    assert not stale, f"cite docs/design.md, not DESIGN.md: {stale}"


def test_the_findings_page_is_short_and_every_finding_points_into_the_notebook():
    text = (ROOT / "docs" / "findings.md").read_text()
    assert len(text.splitlines()) <= 160
    findings = re.split(r"\n## ", text)[1:]
    assert findings
    for f in findings:
        title = f.splitlines()[0]
        if "TO BE FILLED" in f:
            continue
        assert "results.md#" in f, f"finding without a notebook link: {title}"
        assert re.search(r"\b20\d\d-\d\d-\d\d\b", f), f"finding without a date: {title}"
        assert "`python -m " in f or "`tox -e " in f, f"finding without its command: {title}"
