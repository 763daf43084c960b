"""Seconds per phase of the current MILR step: ``MILRModule.timings``, which ``callbacks.timing``
and the bench log. The module's parts add their phases here, so no part needs the module."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator


class Timings(dict):
    """``{phase: seconds}`` of the current step (``think`` is part of ``decode``)."""

    def start_step(self) -> None:
        """A new step: decode, think and reward start at 0; ``monitor`` and ``update`` appear when they run."""
        self.clear()
        self.update(decode=0.0, think=0.0, reward=0.0)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the wall time of the ``with`` block to ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - start
