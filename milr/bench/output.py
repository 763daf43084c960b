"""How both suites print: rounded figures, and stdout kept for the report alone."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any


def rounded(value: Any) -> Any:
    """Floats to 4 significant digits, recursively: timings are not more precise than that."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


@contextlib.contextmanager
def stdout_to_stderr():
    """Send everything printed while measuring to stderr, native writes included (the tokenizer
    trainer's progress bar writes to file descriptor 1), so stdout carries only the report."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
