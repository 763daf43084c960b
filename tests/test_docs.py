"""Every documentation page the repository points to exists: a reference such as ``docs/method.md``
or ``DESIGN.md`` in any tracked text file (code comments, docstrings, configs, scripts, Markdown)
must name a file of the repository, and every relative link in a Markdown file must reach an
existing file, and its ``#anchor`` a heading of that page. Pages that a command writes (a report,
a model card) are listed in ``GENERATED`` with the command, and are not required to exist."""

from __future__ import annotations

import re
import subprocess
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Markdown files written by a command rather than kept in the repository (name or path → writer)
GENERATED = {
    "report.md": "python -m milr.report",
    "gpu_bench.md": "python -m milr.bench --suite gpu",
    "shapes_experiment.md": "python -m milr.experiments.shapes",
    "docs/shapes_experiment.md": "python -m milr.experiments.shapes",
    "milr/shapes/checkpoint/README.md": "python -m milr.shapes.card",
}
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".sh", ".toml", ".cfg", ".txt", ".cff", ".ini", ""}
# a path ending in .md, with an optional #anchor; not part of a longer word or URL
MD_REF = re.compile(r"(?<![\w/.:-])((?:[\w.<>{}-]+/)*[\w.-]+\.md)(?:#([\w-]+))?(?![\w])")
MD_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)


@lru_cache(maxsize=1)
def tracked() -> tuple[Path, ...]:
    """The repository's text files (``git ls-files``; without git, every file outside .git)."""
    try:
        names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
        files = [ROOT / n for n in names]
    except (OSError, subprocess.CalledProcessError):
        files = [p for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts]
    bundled = ROOT / "data" / "benchmarks"
    return tuple(
        p for p in files
        if p.suffix in TEXT_SUFFIXES and p.is_file()
        and not (p.is_relative_to(bundled) and p.suffix in {".txt", ".json", ".jsonl"})  # prompt data
    )


@lru_cache(maxsize=1)
def names() -> frozenset[str]:
    return frozenset(p.name for p in tracked())


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@lru_cache(maxsize=None)
def anchors(page: Path) -> frozenset[str]:
    found, seen = set(), {}
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            found.add(s if n == 0 else f"{s}-{n}")
    return frozenset(found)


def generated(ref: str) -> bool:
    first = ref.split("/")[0]
    placeholder = "/" in ref and (first.isupper() or "<" in first or "{" in first)  # ROOT/x.md, OUT/x.md, <dir>/x.md
    return placeholder or ref in GENERATED or ("/" not in ref and ref in GENERATED)


def resolve(ref: str, source: Path) -> Path | None:
    """The file ``ref`` names from ``source``: relative to the file, to the repository root, or,
    for a bare file name, any tracked file of that name."""
    for base in (source.parent, ROOT):
        candidate = (base / ref).resolve()
        if candidate.is_file():
            return candidate
    if "/" not in ref and ref in names():
        return next(p for p in tracked() if p.name == ref)
    return None


def broken_references() -> list[str]:
    problems = []
    for path in tracked():
        if path == Path(__file__).resolve():  # its examples of missing pages
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        rel = path.relative_to(ROOT).as_posix()
        for m in MD_REF.finditer(text):
            ref, anchor = m.group(1), m.group(2)
            if generated(ref):
                continue
            target = resolve(ref, path)
            line = text.count("\n", 0, m.start()) + 1
            if target is None:
                problems.append(f"{rel}:{line}: {ref} does not exist")
            elif anchor and anchor not in anchors(target):
                problems.append(f"{rel}:{line}: {ref}#{anchor}: no such heading")
    return problems


def broken_links() -> list[str]:
    problems = []
    for path in (p for p in tracked() if p.suffix == ".md"):
        rel = path.relative_to(ROOT).as_posix()
        text = FENCE.sub("", path.read_text(encoding="utf-8"))
        for m in MD_LINK.finditer(text):
            target = m.group(1)
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            page = (path.parent / file).resolve() if file else path
            if not page.exists():
                problems.append(f"{rel}: link to {target}: no such file")
            elif anchor and page.suffix == ".md" and anchor not in anchors(page):
                problems.append(f"{rel}: link to {target}: no such heading")
    return problems


def test_every_referenced_doc_exists():
    assert broken_references() == []


def test_every_markdown_link_resolves():
    assert broken_links() == []


def test_the_checks_see_a_missing_page(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## A section: with `code`\n\nSee [x](missing.md), [y](#a-section-with-code), [z](#nope).\n")
    monkeypatch.setattr(f"{__name__}.tracked", lambda: (page,))
    monkeypatch.setattr(f"{__name__}.names", lambda: frozenset({"page.md"}))
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert broken_links() == ["page.md: link to missing.md: no such file", "page.md: link to #nope: no such heading"]
    page.write_text("Notes live in DESIGN.md and docs/method.md#x; ROOT/report.md is written by a command.\n")
    assert broken_references() == ["page.md:1: DESIGN.md does not exist", "page.md:1: docs/method.md does not exist"]


def test_the_docs_index_lists_every_page():
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"README.md"} - {Path(k).name for k in GENERATED}
    assert {p for p in pages if f"({p})" not in index} == set()


def test_the_readme_stays_a_quick_start():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.encode()) <= 24_000, "move detail into docs/"
    assert "<!-- shapes:begin -->" in text and "<!-- shapes:end -->" in text
