"""The one record every part of milr passes around: a prompt with its benchmark metadata."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Prompt:
    """A text prompt, its position in the source file, and the benchmark's metadata.

    ``index`` is the line/item index in the source file. ``key`` names the prompt's output
    folder and must be stable across runs for resume to work, and unique across the files of
    one benchmark so several files can share a results folder: GenEval and plain text use
    ``<index:05d>`` (GenEval's layout), T2I-CompBench ``<category>_<index:05d>``, WISE
    ``wise_<prompt_id:04d>``. ``repeat`` tells apart the independent runs of one prompt
    (``data.repeats``; each is one unit of work with its own seed and ``samples/<repeat:04d>.png``).
    ``metadata`` is what evaluators need (GenEval ``include``/``exclude``, WISE ``explanation``,
    T2I-CompBench ``category``); it is written to ``metadata.jsonl``.
    """

    text: str
    index: int
    metadata: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    repeat: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError(f"prompt {self.index}: empty prompt text")
        if not self.key:
            object.__setattr__(self, "key", f"{self.index:05d}")
        if not self.key.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"prompt {self.index}: key {self.key!r} must be letters, digits, '_' or '-' (it names a folder)")

    @property
    def uid(self) -> str:
        """The unit of work: this repeat of this prompt (``<key>#<repeat>``)."""
        return f"{self.key}#{self.repeat}"

    @property
    def sha(self) -> str:
        """Hash of the prompt's text and metadata: resume checks that a folder holds this prompt."""
        payload = json.dumps({"text": self.text, "metadata": self.metadata}, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]
