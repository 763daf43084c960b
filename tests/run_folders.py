"""Fabricates run folders in the run-folder contract (milr.results.runs), so readers are tested on
layouts the writer does not produce yet: per-repeat files, non-numeric keys, ``monitors``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from PIL import Image


@dataclass
class Step:
    reward: float
    text: str = "think"
    details: dict[str, Any] = field(default_factory=dict)
    calls: Optional[int] = None  # cumulative reward calls after this step (trace ``reward_calls``), when recorded


@dataclass
class FakePrompt:
    key: str
    metadata: dict[str, Any]
    repeats: list[list[Step]]  # per repeat, its trace (step 0 = the initial generation)
    monitors: Optional[list[dict[str, dict[str, float]]]] = None  # per repeat
    method: Optional[str] = "milr"


def color_of(key: str, repeat: int, step: int) -> tuple[int, int, int]:
    """A colour unique to (prompt, repeat, step): tests tell exported images apart by it."""
    h = sum(ord(c) * 31**i for i, c in enumerate(key)) % 200
    return (h, 20 * repeat + 10, 25 * step + 5)


def _png(path: Path, color: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), color).save(path)


def selected_index(steps: list[Step]) -> int:
    """``select: best``: the first step with the highest reward."""
    best = max(s.reward for s in steps)
    return next(i for i, s in enumerate(steps) if s.reward == best)


def fake_run(folder: Path, prompts: list[FakePrompt], *, per_repeat_files: bool = True, seconds: float = 1.5) -> Path:
    """Write ``prompts`` as a finished run; ``per_repeat_files=False`` writes today's flat
    ``initial.png`` / ``trace.jsonl`` (only for one repeat)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text("# fabricated\nseed_everything: 0\nmodel:\n  select: best\n  seed: 0\n")
    for p in prompts:
        d = folder / p.key
        (d / "metadata.jsonl").parent.mkdir(parents=True, exist_ok=True)
        (d / "metadata.jsonl").write_text(json.dumps(p.metadata) + "\n")
        records = []
        for r, steps in enumerate(p.repeats):
            chosen = selected_index(steps)
            _png(d / "samples" / f"{r:04d}.png", color_of(p.key, r, chosen))
            initial = d / "initial" / f"{r:04d}.png" if per_repeat_files else d / "initial.png"
            _png(initial, color_of(p.key, r, 0))
            trace = d / "trace" / f"{r:04d}.jsonl" if per_repeat_files else d / "trace.jsonl"
            trace.parent.mkdir(parents=True, exist_ok=True)
            trace.write_text(
                "".join(
                    json.dumps({"step": i, "reward": s.reward, "mean_reward": s.reward, "text": s.text, "seconds": 0.1, "details": s.details}
                               | ({} if s.calls is None else {"reward_calls": s.calls}))
                    + "\n"
                    for i, s in enumerate(steps)
                )
            )
            record = {
                "key": p.key,
                "method": p.method,
                "prompt": p.metadata.get("prompt", p.metadata.get("Prompt", p.key)),
                "text": steps[chosen].text,
                "initial_text": steps[0].text,
                "initial_reward": steps[0].reward,
                "final_reward": steps[-1].reward,
                "selected_reward": steps[chosen].reward,
                "best_reward": steps[chosen].reward,
                "steps": len(steps) - 1,
                "reward_calls": len(steps),
                "decoded_images": len(steps),
                "stop_reason": "max_steps",
                "seconds": seconds,
            }
            if p.monitors is not None:
                record["monitors"] = p.monitors[r]
            records.append(record)
        result = records[0] if len(records) == 1 else {**records[0], "repeats": records}
        (d / "result.json").write_text(json.dumps(result, indent=1))
    (folder / "summary.json").write_text(json.dumps({"prompts": len(prompts)}))
    return folder
