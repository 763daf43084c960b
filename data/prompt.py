"""The one record every part of milr passes around: a prompt with its benchmark metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Prompt:
    """A text prompt, its position in the source file, and the benchmark's metadata.

    ``index`` is the line/item index in the source file; output folders are named after it
    (GenEval layout ``<index:05d>``), so it must be stable across runs for resume to work.
    ``metadata`` is what evaluators need (GenEval ``include``/``exclude``, WISE
    ``explanation``, T2I-CompBench ``category``); it is written to ``metadata.jsonl``.
    """

    text: str
    index: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError(f"prompt {self.index}: empty prompt text")
