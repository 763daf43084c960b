"""The package boundaries that keep the house easy to change (docs/extending.md): ``milr`` (its
subpackages included) never imports ``callbacks`` or a concrete reward (only the protocol),
``data`` imports none of the others, rewards never import the LightningModule; only the runner
wires everything. And importing a reward or ``data`` stays cheap: no Lightning."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("milr", "data", "rewards", "callbacks")
#: imports that break a rule on purpose, until their owner moves them: file -> imported module
KNOWN_EXCEPTIONS = {
    # the Shapes experiment reads plan correctness from the Shapes reward; milr/experiments is owned elsewhere
    ("milr/experiments/shapes_report.py", "rewards.shapes"),
}


def imported_modules(package: str) -> dict[str, set[str]]:
    """``{file: {imported module names}}`` for every module of ``package`` and its subpackages."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        found[path.relative_to(ROOT).as_posix()] = names
    return found


def offenders(package: str, allowed) -> list[str]:
    return [
        f"{file}: {name}"
        for file, names in imported_modules(package).items()
        for name in sorted(names)
        if not allowed(name) and (file, name) not in KNOWN_EXCEPTIONS
    ]


def _top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize(
    ("package", "allowed"),
    [
        ("milr", lambda n: _top(n) not in {"callbacks", "train_free_runner"} and (_top(n) != "rewards" or n == "rewards.base")),
        ("data", lambda n: _top(n) not in {"milr", "rewards", "callbacks", "train_free_runner"}),
        ("rewards", lambda n: n not in {"milr.module", "milr.api"} and _top(n) not in {"callbacks", "train_free_runner"}),
        ("callbacks", lambda n: _top(n) not in {"rewards", "train_free_runner"}),
    ],
)
def test_package_boundaries(package, allowed):
    assert offenders(package, allowed) == []


def test_the_checker_sees_imports_in_subpackages():
    assert "rewards.base" in imported_modules("milr")["milr/module.py"]
    assert "milr.results.runs" in imported_modules("milr")["milr/results/report.py"]


def test_the_known_exceptions_still_exist():
    """A fixed exception leaves the list, so it cannot hide a new import of the same kind."""
    found = {package: imported_modules(package) for package in PACKAGES}
    for file, name in KNOWN_EXCEPTIONS:
        assert name in found[file.split("/")[0]][file], f"{file} no longer imports {name}: drop it from KNOWN_EXCEPTIONS"


def test_importing_a_reward_or_data_does_not_import_lightning():
    """Every reward module and ``data`` in a fresh interpreter: neither Lightning nor the
    LightningModule gets imported (one process: if all together do not, none alone does)."""
    modules = ["data"] + [f"rewards.{p.stem}" for p in sorted((ROOT / "rewards").glob("*.py")) if p.stem != "__init__"]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "heavy = sorted(m for m in ('lightning', 'pytorch_lightning', 'milr.module') if m in sys.modules)\n"
        "sys.exit(' '.join(heavy) or None)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
