"""``RUN_DIR/official/<benchmark>.json``: one benchmark's official scores of a run, written by
``python -m rewards.<benchmark> RUN_DIR`` and read by ``milr.report`` (which may not import a
reward), in one benchmark-neutral form: per group (GenEval task, T2I-CompBench category, WISE
category) the score and count, the overall score when the benchmark defines one, and every
image's ``(key, repeat, group, score)``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from milr.files import atomic_write
from milr.results.layout import OFFICIAL_DIR


@dataclass
class ImageScore:
    key: str
    repeat: int
    group: str
    score: float


@dataclass
class OfficialScore:
    """One benchmark's summary of one run: ``groups`` = {group: {"score", "n"}}."""

    benchmark: str
    source: str  # what produced the per-image scores (re-scored images, or the run's own reward details)
    groups: dict[str, dict[str, float]]
    overall: Optional[float]
    images: list[ImageScore] = field(default_factory=list)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # the benchmark's further figures (the report reads none)

    def write(self, run_dir: Path) -> Path:
        """``RUN_DIR/official/<benchmark>.json``, atomically: a report never reads half a file."""
        path = Path(run_dir) / OFFICIAL_DIR / f"{self.benchmark}.json"
        atomic_write(path, json.dumps(asdict(self), indent=1))
        return path


def read_official(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Benchmark -> its ``official/<benchmark>.json`` as written, for every benchmark scored."""
    found = {}
    for path in sorted((Path(run_dir) / OFFICIAL_DIR).glob("*.json")):
        data = json.loads(path.read_text())
        found[data["benchmark"]] = data
    return found
