"""The package boundaries that keep the house easy to change (docs/extending.md): ``milr`` never
imports ``callbacks`` or a concrete reward (only the protocol), ``data`` imports none of the
others, rewards never import the LightningModule; only the runner wires everything."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(package: str) -> dict[str, set[str]]:
    """``{file: {imported module names}}`` for every module of ``package`` (all import forms)."""
    found = {}
    for path in sorted((ROOT / package).glob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        found[path.relative_to(ROOT).as_posix()] = names
    return found


def offenders(package: str, allowed) -> list[str]:
    return [f"{file}: {name}" for file, names in imported_modules(package).items() for name in sorted(names) if not allowed(name)]


def _top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize(
    ("package", "allowed"),
    [
        ("milr", lambda n: _top(n) != "callbacks" and (_top(n) != "rewards" or n == "rewards.base")),
        ("data", lambda n: _top(n) not in {"milr", "rewards", "callbacks"}),
        ("rewards", lambda n: n not in {"milr.module", "milr.api"} and _top(n) != "callbacks"),
        ("callbacks", lambda n: _top(n) != "rewards"),
    ],
)
def test_package_boundaries(package, allowed):
    assert offenders(package, allowed) == []


def test_the_checker_sees_imports():
    assert "rewards.base" in imported_modules("milr")["milr/module.py"]
