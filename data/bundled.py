"""The benchmark prompt files shipped with milr, and how a prompt path finds them.

Configs name the bundled files as ``data/benchmarks/...``; ``resolve_path`` makes that work
from any working directory and in a non-editable install, while a file of the user's own
(absolute, or relative to the working directory) always wins.
"""

from __future__ import annotations

from pathlib import Path

#: the folder holding the ``data`` package; bundled files are named relative to it
ROOT = Path(__file__).resolve().parent.parent

#: the bundled prompt sets (GenEval, T2I-CompBench; see ``data/benchmarks/README.md``)
BENCHMARKS = ROOT / "data" / "benchmarks"


def resolve_path(path: str | Path, *, what: str = "file") -> Path:
    """``path`` if it exists, else a relative ``path`` taken from the folder holding ``data``.

    ``what`` names the file in the error, e.g. ``"prompt file"``.
    """
    path = Path(path)
    if path.exists():
        return path
    if path.is_absolute():
        raise FileNotFoundError(f"{what} not found: {path}")
    bundled = ROOT / path
    if bundled.exists():
        return bundled
    raise FileNotFoundError(
        f"{what} not found: {path} (looked in the working directory, {Path.cwd() / path}, "
        f"and next to the data package, {bundled})"
    )
