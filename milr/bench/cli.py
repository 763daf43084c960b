"""``python -m milr.bench [--suite {default,gpu}]``: picks the suite; each parses its own options."""

from __future__ import annotations

import sys
from typing import Any, Sequence

from milr.bench import default, gpu


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the suite ``--suite`` names (``default`` unless ``gpu``) with the other options."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--suite=gpu" in argv or any(a == "--suite" and b == "gpu" for a, b in zip(argv, argv[1:])):
        return gpu.main([a for a in argv if a not in ("--suite", "gpu", "--suite=gpu")])
    return default.main(argv)
