"""Reads a run folder back (``milr.results.layout``), for the exporters, the benchmark commands
and the report, which must not import the writer or a reward.

Prompts are found by their ``result.json``, never by folder name; a flat ``result.json`` is one
repeat, a ``"repeats"`` list is one dict per repeat, and a one-repeat prompt may have the flat
``initial.png`` / ``trace.jsonl`` of older runs. A field a run did not record is ``None``
(shown as "n/a"), never a guess.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

import yaml

from milr.results.layout import CONFIG_FILE, INITIAL_DIR, METADATA_FILE, RESULT_FILE, SAMPLES_DIR, SUMMARY_FILE, TRACE_DIR


@dataclass
class Repeat:
    """One independent run of a prompt: its selected image, its initial image and its trace."""

    index: int
    sample: Path
    initial: Optional[Path]
    trace: list[dict[str, Any]]
    record: dict[str, Any]
    select: Optional[str] = None  # the run's ``model.select`` ("best" / "last"), to find the selected step

    def get(self, key: str) -> Any:
        return self.record.get(key)

    @property
    def selected_reward(self) -> Optional[float]:
        # before ``selected_reward`` existed, ``final_reward`` was the returned image's reward
        value = self.record.get("selected_reward", self.record.get("final_reward"))
        return None if value is None else float(value)

    @property
    def initial_reward(self) -> Optional[float]:
        if "initial_reward" in self.record:
            return float(self.record["initial_reward"])
        return float(self.trace[0]["reward"]) if self.trace else None

    @property
    def initial_text(self) -> Optional[str]:
        """Think text before optimisation: recorded, else the trace's step 0 (the stage-0 generation)."""
        if "initial_text" in self.record:
            return self.record["initial_text"]
        return self.trace[0].get("text") if self.trace else None

    @property
    def text(self) -> Optional[str]:
        return self.record.get("text")

    @property
    def monitors(self) -> dict[str, dict[str, Optional[float]]]:
        return self.record.get("monitors") or {}

    @cached_property
    def selected_step(self) -> Optional[dict[str, Any]]:
        """The trace line of the selected image, or ``None`` when the run does not say which it is.

        ``selected_step`` when recorded; else the steps whose reward is the selected reward, and
        when those disagree in their details, the first (``select: best`` keeps the first
        maximum) or the last (``select: last``); an unknown rule leaves it undetermined.
        """
        if isinstance(self.record.get("selected_step"), int):
            steps = [s for s in self.trace if s.get("step") == self.record["selected_step"]]
            return steps[0] if steps else None
        reward = self.selected_reward
        matches = [s for s in self.trace if reward is not None and s.get("reward") == reward]
        if not matches:
            return None
        if all(m.get("details") == matches[0].get("details") for m in matches):
            return matches[0]
        return {"best": matches[0], "last": matches[-1]}.get(self.select or "")

    @property
    def selected_details(self) -> Optional[dict[str, Any]]:
        step = self.selected_step
        return None if step is None else step.get("details")


@dataclass
class PromptRun:
    """One prompt of a run: its key (the folder name), metadata line, result and repeats."""

    key: str
    folder: Path
    metadata: dict[str, Any]
    result: dict[str, Any]
    repeats: list[Repeat]

    @property
    def text(self) -> str:
        return self.result.get("prompt") or self.metadata.get("prompt", "")


@dataclass
class Run:
    folder: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    prompts: list[PromptRun] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def method(self) -> Optional[str]:
        """``base`` / ``best_of_n`` / ``milr`` / ``anti_reward`` as recorded, else ``None``."""
        methods = {p.result.get("method") for p in self.prompts} - {None}
        if len(methods) == 1:
            return methods.pop()
        return (self.config.get("model") or {}).get("method") if not methods else "mixed"

    def by_key(self) -> dict[str, PromptRun]:
        return {p.key: p for p in self.prompts}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _per_repeat(folder: Path, name: str, suffix: str, r: int, flat: bool) -> Optional[Path]:
    """``<name>/{r:04d}<suffix>`` if present, else the flat ``<name><suffix>`` of a one-repeat prompt."""
    per_repeat = folder / name / f"{r:04d}{suffix}"
    if per_repeat.is_file():
        return per_repeat
    legacy = folder / f"{name}{suffix}"
    return legacy if flat and legacy.is_file() else None


def read_prompt(folder: Path, select: Optional[str] = None) -> PromptRun:
    """One prompt folder (it must hold ``result.json``)."""
    result = json.loads((folder / RESULT_FILE).read_text())
    meta_file = folder / METADATA_FILE
    metadata = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    records = result.get("repeats") or [result]
    flat = len(records) == 1
    samples = sorted(p.name for p in (folder / SAMPLES_DIR).glob("*.png"))
    expected = [f"{r:04d}.png" for r in range(len(records))]
    if samples != expected:
        raise ValueError(f"{folder}: result.json has {len(records)} repeat(s), expected samples {expected}, found {samples}")
    repeats = []
    for r, record in enumerate(records):
        trace_file = _per_repeat(folder, TRACE_DIR, ".jsonl", r, flat)
        repeats.append(
            Repeat(
                index=r,
                sample=folder / SAMPLES_DIR / expected[r],
                initial=_per_repeat(folder, INITIAL_DIR, ".png", r, flat),
                trace=_read_jsonl(trace_file) if trace_file else [],
                record=record,
                select=select,
            )
        )
    return PromptRun(key=folder.name, folder=folder, metadata=metadata, result=result, repeats=repeats)


def read_run(folder: str | Path) -> Run:
    """Every complete prompt of a run folder, in key order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"run folder {folder} does not exist")
    config_file, summary_file = folder / CONFIG_FILE, folder / SUMMARY_FILE
    config = (yaml.safe_load(config_file.read_text()) or {}) if config_file.is_file() else {}
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    select = (config.get("model") or {}).get("select")
    prompts = [read_prompt(path.parent, select) for path in sorted(folder.glob(f"*/{RESULT_FILE}"))]
    if not prompts:
        raise ValueError(f"{folder} holds no finished prompt (no */{RESULT_FILE}): is it a run folder?")
    return Run(folder=folder, config=config, summary=summary, prompts=prompts)
